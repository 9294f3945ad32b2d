"""The assistant's fixed replies (questions, confirmations, action results), in both languages.

Knowledge-base answers come from the understanding's ``compose``; everything else the
assistant says is one of these templates, filled with values the owning services returned,
and is passed through the same red-line checker before it is shown (``handlers``).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["STATES", "TEMPLATES", "render", "state_name"]

TEMPLATES: Mapping[str, Mapping[str, str]] = {
    "ask.application_id": {
        "zh": "请问是哪一笔贷款申请？请发送申请编号。",
        "en": "Which loan application do you mean? Please send its application number.",
    },
    "ask.loan_id": {
        "zh": "请问是哪一笔贷款？请发送贷款编号。",
        "en": "Which loan do you mean? Please send its loan number.",
    },
    "ask.batch_id": {
        "zh": "请问是哪一个代发工资批次？请发送批次编号。",
        "en": "Which payroll batch do you mean? Please send its batch number.",
    },
    "ask.device_id": {
        "zh": "请问要锁定哪一台设备？",
        "en": "Which device should be locked?",
    },
    "ask.amount": {
        "zh": "请问要还款多少金额？",
        "en": "How much would you like to repay?",
    },
    "ask.options": {
        "zh": "可选：\n{options}\n回复序号即可。",
        "en": "Choose one:\n{options}\nReply with its number.",
    },
    "confirm.loan.repay": {
        "zh": "请确认：从您的结算账户向贷款 {loan} 还款 {amount} {currency}。回复“确认”继续，回复“取消”放弃。",
        "en": "Please confirm: repay {amount} {currency} on loan {loan} from your settlement "
        "account. Reply “yes” to go ahead or “no” to cancel.",
    },
    "fallback": {
        "zh": "抱歉，这个问题我暂时无法回答，您可以说“转人工”联系客服。",
        "en": "Sorry, I cannot answer that here; say “talk to a person” to reach a colleague.",
    },
    "declined": {
        "zh": "好的，已取消，没有进行任何操作。",
        "en": "All right, cancelled. Nothing was done.",
    },
    "clarify": {
        "zh": "抱歉，我没有理解您的意思，可以换个说法再说一次吗？",
        "en": "Sorry, I did not understand. Could you say it another way?",
    },
    "handoff.queued": {
        "zh": "已为您转接人工客服，请稍候，客服的回复会显示在这个对话中。",
        "en": "I have passed your conversation to a colleague; their reply will appear here.",
    },
    "handoff.complaint": {
        "zh": "您的投诉已记录，并已转交人工客服处理，客服的回复会显示在这个对话中。",
        "en": "Your complaint is recorded and passed to a colleague; their reply will appear here.",
    },
    "handoff.closed": {
        "zh": "人工客服已结束本次服务，如有其他问题可以继续问我。",
        "en": "Our colleague has closed the chat. Ask me if there is anything else.",
    },
    "step_up_required": {
        "zh": "为保护您的资金安全，这项操作需要先完成二次验证（短信验证码或动态口令）。请在应用中完成验证后再告诉我。",
        "en": "To protect your money, this needs a second authentication (SMS code or "
        "authenticator). Please verify in the app, then ask me again.",
    },
    "refused": {
        "zh": "没有找到这笔记录，或它不属于您的账户，因此无法办理。",
        "en": "I could not find that record on your account, so I cannot do this.",
    },
    "refused.state": {
        "zh": "这笔业务当前的状态不允许这项操作。",
        "en": "This cannot be done in the record's current state.",
    },
    "unavailable": {
        "zh": "相关系统暂时没有响应，没有进行任何操作，请稍后再试。",
        "en": "The system behind this is not answering right now; nothing was done. Please try "
        "again later.",
    },
    "result.application_status": {
        "zh": "您的贷款申请 {application} 当前状态：{state}。",
        "en": "Your loan application {application} is {state}.",
    },
    "result.next_installment": {
        "zh": "贷款 {loan} 的下一期（第 {number} 期）应于 {due} 还款 {amount} {currency}"
        "（本金 {principal}，利息 {interest}）。",
        "en": "The next installment of loan {loan} (number {number}) is {amount} {currency}, "
        "due {due} (principal {principal}, interest {interest}).",
    },
    "result.no_installment": {
        "zh": "贷款 {loan} 目前没有待还的分期。",
        "en": "Loan {loan} has no installment left to pay.",
    },
    "result.early_repayment_quote": {
        "zh": "贷款 {loan} 截至 {as_of} 提前结清需还 {amount} {currency}（利息计至当日）。",
        "en": "To settle loan {loan} early as of {as_of}: {amount} {currency} (interest to "
        "that day).",
    },
    "result.repaid": {
        "zh": "已还款：本金 {principal}、利息 {interest}、罚息 {penalty} {currency}。{settled}",
        "en": "Repaid: principal {principal}, interest {interest}, penalty {penalty} "
        "{currency}. {settled}",
    },
    "result.settled": {"zh": "贷款已结清。", "en": "The loan is settled."},
    "result.batch_status": {
        "zh": "代发批次 {batch} 当前状态：{state}。{counts}",
        "en": "Payroll batch {batch} is {state}. {counts}",
    },
    "result.batch_counts": {
        "zh": "共 {total} 笔，成功 {paid} 笔，失败 {failed} 笔。",
        "en": "{total} payments: {paid} paid, {failed} failed.",
    },
    "result.device_locked": {
        "zh": "已锁定该设备：设备上的 {count} 个登录已失效。",
        "en": "The device is locked: {count} sign-ins on it have ended.",
    },
    "result.sessions_revoked": {
        "zh": "已退出您在其他设备上的 {count} 个登录。",
        "en": "Signed out {count} sessions on your other devices.",
    },
}


def render(name: str, language: str, **values: object) -> str:
    """Template ``name`` in ``language`` ("zh" or "en"; Chinese when unknown), filled."""
    texts = TEMPLATES[name]
    return texts.get(language, texts["zh"]).format(**values)


# The owning services' states, as a customer reads them.
STATES: Mapping[str, Mapping[str, str]] = {
    "AWAITING_RISK": {"zh": "审核中", "en": "being assessed"},
    "APPROVED": {"zh": "已批准，等待您确认接受", "en": "approved, waiting for your acceptance"},
    "DECLINED": {"zh": "未通过", "en": "declined"},
    "ACCEPTED": {"zh": "已接受，放款处理中或已放款", "en": "accepted (paid out or being paid out)"},
    "SUBMITTED": {"zh": "已提交，待审批", "en": "submitted, waiting for approval"},
    "EXECUTING": {"zh": "发放中", "en": "being paid"},
    "COMPLETED": {"zh": "已完成", "en": "completed"},
    "REFUSED": {"zh": "已退回", "en": "refused"},
}


def state_name(state: str, language: str) -> str:
    """An owning service's state as the customer reads it (the code itself when unknown)."""
    names = STATES.get(state)
    if names is None:
        return state
    return names.get(language, names["zh"])
