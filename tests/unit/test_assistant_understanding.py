"""The assistant's understanding core: knowledge base, labelled data, intents and articles,
slots, typos, explanations, and the red-line check of every reply."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rapidfuzz import fuzz, process
from scipy.sparse import hstack

from zerocontact.assistant.understanding import INTENTS, Understander, Understanding, intents
from zerocontact.assistant.understanding import text as text_module
from zerocontact.assistant.understanding.action_or_article import ActionOrArticle
from zerocontact.assistant.understanding.classifier import IntentClassifier
from zerocontact.assistant.understanding.knowledge import (
    KnowledgeError,
    load_articles,
    parse_markdown,
)
from zerocontact.assistant.understanding.labelled import (
    Example,
    LabelledDataError,
    read_examples,
)
from zerocontact.assistant.understanding.replies import SAFE_FALLBACK, SAYINGS
from zerocontact.assistant.understanding.slots import extract
from zerocontact.assistant.understanding.spelling import Homophones, Speller, sounds
from zerocontact.assistant.understanding.synonyms import Lexicon
from zerocontact.assistant.understanding.text import all_words, language, normalize
from zerocontact.assistant.understanding.understander import DATA_DIR, KNOWLEDGE_DIR, TUNING
from zerocontact.platform.compliance import check_text

LOAN = "0190f3a2-7c41-7b2e-9a11-3c5d2e8f4b60"
BATCH = "0192b4d1-5e6f-7a8b-9c0d-1e2f3a4b5c6d"


@pytest.fixture(scope="module")
def understander() -> Understander:
    return Understander.load()


class TestLabelledData:
    def test_eval_is_kept_apart_from_training(self) -> None:
        train = read_examples(DATA_DIR / "train.jsonl")
        evaluation = read_examples(DATA_DIR / "eval.jsonl")
        trained = {normalize(e.text) for e in train}
        assert not [e.text for e in evaluation if normalize(e.text) in trained]
        assert len({normalize(e.text) for e in evaluation}) == len(evaluation)

    def test_no_training_line_is_a_near_copy_of_an_eval_line(self) -> None:
        train = [normalize(e.text) for e in read_examples(DATA_DIR / "train.jsonl")]
        evaluation = [normalize(e.text) for e in read_examples(DATA_DIR / "eval.jsonl")]
        closest = process.cdist(evaluation, train, scorer=fuzz.ratio).max(axis=1)
        near = [e for e, score in zip(evaluation, closest, strict=True) if score >= 90]
        assert near == []

    def test_eval_counts_and_shares(self) -> None:
        evaluation = read_examples(DATA_DIR / "eval.jsonl")
        kinds = Counter(e.kind for e in evaluation)
        langs = Counter(e.lang for e in evaluation)
        assert len(evaluation) >= 400
        assert (kinds["paraphrase"] + kinds["typo"]) / len(evaluation) >= 1 / 3
        assert kinds["typo"] >= 50 and kinds["mixed"] >= 30
        assert langs["zh"] >= 100 and langs["en"] >= 100
        # Every intent is evaluated, and so is every article.
        assert {e.intent for e in evaluation} == set(INTENTS)
        assert {e.article_id for e in evaluation if e.article_id} == {
            a.id for a in load_articles(KNOWLEDGE_DIR)
        }

    def test_conversations_are_scripted_with_known_intents(self) -> None:
        lines = (DATA_DIR / "conversations.jsonl").read_text("utf-8").splitlines()
        conversations = [json.loads(line) for line in lines if line.strip()]
        assert len(conversations) >= 20
        turns = [t for c in conversations for t in c["turns"]]
        assert {t["intent"] for t in turns} <= set(INTENTS)
        # Some end with a person, as real ones do.
        assert any(t["intent"] == intents.HANDOFF for t in turns)

    def test_malformed_line_names_file_line_and_field(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.jsonl"
        path.write_text(
            '{"text": "hi", "intent": "greeting", "article_id": null, "lang": "en", "kind": "canonical"}\n'
            '{"text": "x", "intent": "faq", "article_id": null, "lang": "en", "kind": "typo"}\n',
            "utf-8",
        )
        with pytest.raises(LabelledDataError, match=r"bad.jsonl:2: article_id is required"):
            read_examples(path)


class TestKnowledgeBase:
    def test_every_article_answers_within_the_red_lines(self) -> None:
        articles = load_articles(KNOWLEDGE_DIR)
        assert len(articles) >= 30
        assert len({a.topic for a in articles}) >= 8
        for article in articles:
            for lang in ("zh", "en"):
                answer = article.answer(lang)  # type: ignore[arg-type]
                assert answer, article.id
                assert check_text(answer, disclosures=article.disclosures) == [], (article.id, lang)

    def test_heading_without_id_names_the_line(self) -> None:
        with pytest.raises(KnowledgeError, match=r"t.md:3: expected '## <id>"):
            parse_markdown("# topic\n\n## 没有编号的标题\n", topic="t", source="t.md")

    def test_article_without_an_english_answer_is_refused(self) -> None:
        with pytest.raises(KnowledgeError, match=r"a\.b has no English"):
            parse_markdown("## a.b — 标题 / Title\n\n中文: 答案。\n", topic="t", source="t.md")


class TestUnderstanding:
    def test_question_answered_by_its_article_with_the_reason(
        self, understander: Understander
    ) -> None:
        u = understander.understand("提前还款要违约金吗？")
        assert (u.intent, u.article_id, u.language) == ("faq", "early.fees", "zh")
        assert 0.5 < u.confidence <= 1.0
        assert "early.fees" in u.explanation and "BM25" in u.explanation
        reply = understander.compose(u)
        assert not reply.blocked and "违约金" in reply.text
        assert (reply.article_id, reply.intent) == ("early.fees", "faq")

    def test_english_typo_and_mixed(self, understander: Understander) -> None:
        english = understander.understand("Is there a fee for early repaymnet?")
        assert (english.article_id, english.language) == ("early.fees", "en")
        assert "no fee" in understander.compose(english).text
        mixed = understander.understand("手机lost了怎么办")
        assert (mixed.article_id, mixed.language) == ("security.lost-phone", "zh")

    def test_homophone_typo(self, understander: Understander) -> None:
        assert understander.understand("提钱还款有违约今吗").article_id == "early.fees"

    @pytest.mark.parametrize(
        ("message", "intent"),
        [
            ("转人工", intents.HANDOFF),
            ("talk to a human", intents.HANDOFF),
            ("我要投诉，你们多扣了我的钱", intents.COMPLAINT),
            ("帮我锁定丢失的手机", intents.IDENTITY_LOCK_DEVICE),
            ("sign me out of all devices", intents.IDENTITY_REVOKE_SESSIONS),
            ("确认", intents.CONFIRM_YES),
            ("不用了", intents.CONFIRM_NO),
            ("你好", intents.GREETING),
            ("谢谢", intents.THANKS),
            ("推荐一只股票", intents.UNKNOWN),
        ],
    )
    def test_intents(self, understander: Understander, message: str, intent: str) -> None:
        u = understander.understand(message)
        assert u.intent == intent, u.explanation
        assert u.article_id is None

    def test_action_with_its_slot(self, understander: Understander) -> None:
        u = understander.understand(f"贷款{LOAN}下一期还多少钱")
        assert (u.intent, u.slots) == (intents.LOAN_NEXT_INSTALLMENT, {"loan_id": LOAN})
        assert "intent loan.next_installment" in u.explanation

    def test_missing_slot_is_asked_for(self, understander: Understander) -> None:
        u = understander.understand("我要还款500元")
        assert (u.intent, u.slots) == (intents.LOAN_REPAY, {"amount": "500"})
        assert understander.compose(u).text == "请问是哪一笔贷款？请提供贷款编号。"

    def test_nothing_to_understand(self, understander: Understander) -> None:
        for message in ("", "   ", "？？？"):
            u = understander.understand(message)
            assert (u.intent, u.confidence) == (intents.UNKNOWN, 0.0)
            assert not understander.compose(u).blocked


class TestSlots:
    def test_cue_names_the_id(self) -> None:
        assert extract(f"批次 {BATCH} 发完了吗", intents.UNKNOWN) == {"batch_id": BATCH}
        assert extract(f"application {LOAN}", intents.LOAN_REPAY) == {"application_id": LOAN}
        assert extract(f"check {LOAN}", intents.LOAN_APPLICATION_STATUS) == {"application_id": LOAN}

    def test_amounts(self) -> None:
        assert extract("还1,200.50元", intents.LOAN_REPAY) == {"amount": "1200.50"}
        assert extract("repay ¥300 now", intents.LOAN_REPAY) == {"amount": "300"}
        assert extract("还3期", intents.LOAN_REPAY) == {}


class TestText:
    def test_language(self) -> None:
        assert language("我的贷款什么时候到账") == "zh"
        assert language("how do i 提前还款") == "en"
        assert language("我的loan什么时候到账") == "zh"

    def test_speller_and_homophones(self) -> None:
        speller = Speller(["repayment", "early", "fee"])
        assert speller.correct("repaymnet") == "repayment"
        assert speller.correct("fee") == "fee"
        assert speller.correct("weather") == "weather"
        homophones = Homophones(["贷款", "提前", "还款"])
        assert homophones.correct("我想提钱换款代款") == "我想提前还款贷款"

    def test_jieba_loads_quietly(
        self, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
    ) -> None:
        text_module._jieba.cache_clear()
        with caplog.at_level(logging.DEBUG):
            text_module.warm_up()
        assert capsys.readouterr().err == ""
        assert not [r for r in caplog.records if r.name == "jieba"]
        assert "锁定设备" in text_module.words(normalize("帮我锁定设备"))


class TestCompliance:
    def test_every_saying_is_within_the_red_lines(self) -> None:
        for intent, sayings in SAYINGS.items():
            for lang, saying in sayings.items():
                assert check_text(saying) == [], (intent, lang)
        for fallback in SAFE_FALLBACK.values():
            assert check_text(fallback) == []

    def test_unsafe_article_is_blocked_and_replaced(self, tmp_path: Path) -> None:
        (tmp_path / "fixture.md").write_text(
            "## wealth.unsafe — 稳健理财 / Steady wealth\n"
            "keywords: 理财, wealth\n\n"
            "中文: 本理财产品保本保收益，收益最高。\n\n"
            "English: Guaranteed returns, the best in town.\n\n"
            "## loan.undisclosed — 经营贷 / Business loan\n\n"
            "中文: 310经营贷随借随还。\n\n"
            "English: The 310 business loan: borrow and repay any time.\n",
            "utf-8",
        )
        training = [
            Example("稳健理财怎么样", "faq", "wealth.unsafe", "zh", "canonical"),
            Example("经营贷怎么借", "faq", "loan.undisclosed", "zh", "canonical"),
            Example("你好", "greeting", None, "zh", "canonical"),
        ]
        understander = Understander(load_articles(tmp_path), training)
        unsafe = Understanding("faq", 0.9, "wealth.unsafe", "zh")
        reply = understander.compose(unsafe)
        assert reply.blocked and reply.text == SAFE_FALLBACK["zh"]
        assert [f.split(":")[0] for f in reply.findings] == [
            "missing_risk_disclosure",  # it offers 理财, a wealth product
            "forbidden_claim",
            "forbidden_claim",
            "absolute_superlative",
        ]
        english = understander.compose(Understanding("faq", 0.9, "wealth.unsafe", "en"))
        assert english.blocked and english.text == SAFE_FALLBACK["en"]
        # A loan product named without its annualized rate is blocked too.
        loan = understander.compose(Understanding("faq", 0.9, "loan.undisclosed", "zh"))
        assert loan.blocked and loan.findings[0].startswith("missing_annualized_rate")

    def test_training_must_refer_to_known_articles(self, tmp_path: Path) -> None:
        (tmp_path / "a.md").write_text(
            "## a.one — 标题 / Title\n\n中文: 答案。\n\nEnglish: Answer.\n", "utf-8"
        )
        with pytest.raises(ValueError, match=r"not in the knowledge base: \['b.two'\]"):
            Understander(
                load_articles(tmp_path), [Example("问", "faq", "b.two", "zh", "canonical")]
            )


def test_training_is_reproducible() -> None:
    texts = ["提前还款", "违约金", "手机丢了", "锁定设备", "利率多少", "年化利率"]
    labels = ["a", "a", "b", "b", "c", "c"]

    def fitted() -> list[float]:
        classifier = IntentClassifier(texts, labels, tokens=str.split)
        return [float(p) for p in classifier.rank("提前还款违约金").probabilities]

    assert fitted() == fitted()


def test_one_message_is_scored_as_scikit_learn_scores_it() -> None:
    texts = ["提前还款", "违约金 fee", "手机丢了", "锁定设备 lock", "利率多少", "年化利率 apr"]
    labels = ["a", "a", "b", "b", "c", "c"]
    classifier = IntentClassifier(texts, labels, tokens=str.split, sounds=sounds)
    for text in ["提前还款违约金", "lock 手机", "apr", "", "zzz 无关"]:
        mine = classifier.features(text)
        theirs = hstack([v.transform([text]) for v in classifier._vectorizers]).tocsr()
        assert np.allclose(mine.toarray(), theirs.toarray(), atol=1e-6)
        expected = classifier._model.predict_proba(theirs)[0]
        assert np.allclose(classifier.probabilities(mine), expected, atol=1e-6)


PAIR_LINES = (
    ("帮我锁定丢了的手机", intents.IDENTITY_LOCK_DEVICE, None),
    ("给我冻结那台设备", intents.IDENTITY_LOCK_DEVICE, None),
    ("please lock my phone", intents.IDENTITY_LOCK_DEVICE, None),
    ("我要退出所有设备", intents.IDENTITY_REVOKE_SESSIONS, None),
    ("please sign me out everywhere", intents.IDENTITY_REVOKE_SESSIONS, None),
    ("手机丢了怎么办", intents.FAQ, "security.lost-phone"),
    ("how do i protect my account if my phone is lost", intents.FAQ, "security.lost-phone"),
    ("怎么退出其他设备的登录", intents.FAQ, "security.sessions"),
    ("what does signing out everywhere do", intents.FAQ, "security.sessions"),
    ("利率多少", intents.FAQ, "rates.annualized"),  # in no pair: not learnt from
)


def test_two_classes_are_scored_as_scikit_learn_scores_them() -> None:
    texts = ["帮我锁定", "lock it", "给我退出", "怎么锁定", "how do i lock", "为什么退出"]
    labels = ["act", "act", "act", "ask", "ask", "ask"]
    classifier = IntentClassifier(texts, labels, tokens=str.split)
    for text in ["帮我退出", "how", "zzz"]:
        mine = classifier.features(text)
        theirs = hstack([v.transform([text]) for v in classifier._vectorizers]).tocsr()
        expected = classifier._model.predict_proba(theirs)[0]
        assert np.allclose(classifier.probabilities(mine), expected, atol=1e-6)
    assert classifier.explain(classifier.rank("帮我退出"), "act")


class TestSecondStage:
    """The action-or-article stage: one model of how a request and a question are asked,
    learnt across the pairs, applied only between an action and the article about it."""

    def test_a_request_is_told_from_a_question_on_a_topic_it_was_not_taught(self) -> None:
        stage = ActionOrArticle(
            [(normalize(t), i, a) for t, i, a in PAIR_LINES], tokens=all_words, pairs="core"
        )
        # The payoff quote's pair has no line here: the cues carry over from the others.
        assert stage.request_probability(normalize("帮我算结清金额")) > 0.5
        assert stage.request_probability(normalize("结清金额怎么算")) < 0.5
        assert stage.request_probability(normalize("please quote my payoff")) > 0.5
        assert stage.request_probability(normalize("how is the payoff worked out")) < 0.5
        assert "word:帮" in stage.cues(normalize("帮我算结清金额"), request=True)

    def test_pairs(self) -> None:
        stage = ActionOrArticle([], tokens=all_words, pairs="core")
        assert stage.group("security.sessions") == (
            intents.IDENTITY_REVOKE_SESSIONS,
            ("security.sessions",),
        )
        assert stage.group(intents.IDENTITY_LOCK_DEVICE) == (
            intents.IDENTITY_LOCK_DEVICE,
            ("security.lost-phone",),
        )
        assert stage.group("payroll.batch-status") is None  # a pair of "all" only
        assert stage.group("rates.annualized") is None
        # Nothing to learn from: it has no opinion.
        assert stage.request_probability("帮我锁定") == 0.5
        everything = ActionOrArticle([], tokens=all_words, pairs="all")
        assert everything.group("early.how") == (intents.LOAN_REPAY, ("repay.methods", "early.how"))

    def test_the_service_uses_it(self, understander: Understander) -> None:
        assert TUNING.stage2 > 0
        u = understander.understand("帮我把别的设备上的登录都踢下线")
        assert u.intent == intents.IDENTITY_REVOKE_SESSIONS, u.explanation
        assert "second stage: a request" in u.explanation
        u = understander.understand("如何退出别的设备上的登录")
        assert (u.intent, u.article_id) == (intents.FAQ, "security.sessions"), u.explanation
        assert "second stage: a question" in u.explanation

    @pytest.mark.parametrize(
        "message",
        [
            "帮我锁住那部丢了的手机",
            "手机丢了我的钱会不会被转走",
            "lock my stolen phone",
            "what should I do now that my phone is gone",
            "给我算一下今天结清多少钱",
            "结清金额包括什么",
            "quote my payoff",
            "how is a payoff quote worked out",
            "sign out my other sessions",
            "how do I see which devices are logged in",
        ],
    )
    def test_it_decides_between_the_pair_and_nothing_else(
        self, understander: Understander, message: str
    ) -> None:
        evidence = understander.evidence(message)
        assert evidence is not None
        first = understander.decide(evidence, replace(TUNING, stage2=0.0))
        second = understander.decide(evidence, replace(TUNING, stage2=1.0))
        stage = understander._stage2
        group = stage.group(first.article_id or first.intent)
        if group is None:  # not a pair: the stage changes nothing
            assert (second.intent, second.article_id) == (first.intent, first.article_id)
            return
        # Weighted fully, the stage alone splits the pair the first stage chose.
        action, articles = group
        if evidence.request_p >= 0.5:
            assert second.intent == action, second.explanation
        else:
            assert second.article_id in articles, second.explanation
        # Off, it is the first stage alone.
        assert "second stage" not in first.explanation


class TestExpansionAndSounds:
    def test_a_colloquial_wording_brings_the_articles_term(self) -> None:
        lexicon = Lexicon({"额度": ["能借多少"], "提前还款": ["pay it off"]})
        assert lexicon.expand("我最多能借多少钱") == "我最多能借多少钱 额度"
        assert lexicon.terms("can i pay it off early") == ["提前还款"]
        # English variants match whole words only; a term already present is not repeated.
        assert lexicon.terms("pay it offline") == []
        assert lexicon.terms("额度能借多少") == []

    def test_the_lexicon_in_the_repository_loads(self) -> None:
        assert "人脸识别" in Lexicon.load().terms("刷脸总是失败")

    def test_malformed_lexicon_line_names_the_line(self, tmp_path: Path) -> None:
        path = tmp_path / "synonyms.txt"
        path.write_text("# comment\n额度 能借多少\n", "utf-8")
        with pytest.raises(ValueError, match=r"synonyms.txt:2"):
            Lexicon.load(path)

    def test_a_homophone_typo_sounds_like_the_word(self) -> None:
        assert set(sounds("贷款")) <= set(sounds("代款"))
        assert "dai_kuan" in sounds("代款")
        assert sounds("repay") == []
