"""What the assistant says for each intent that is not a knowledge-base answer, in both
languages. Action intents have two texts: what it does, and the question for a missing slot."""

from __future__ import annotations

from zerocontact.assistant.understanding import intents as i
from zerocontact.assistant.understanding.text import Language

# intent -> language -> text
SAYINGS: dict[str, dict[Language, str]] = {
    i.LOAN_APPLICATION_STATUS: {
        "zh": "好的，我来为您查询贷款申请的进度。",
        "en": "Sure, I'll check the progress of your loan application.",
    },
    i.LOAN_NEXT_INSTALLMENT: {
        "zh": "好的，我来为您查询下一期的还款日和应还金额。",
        "en": "Sure, I'll look up your next installment's due date and amount.",
    },
    i.LOAN_EARLY_REPAYMENT_QUOTE: {
        "zh": "好的，我来为您计算今天提前结清需要还的金额。",
        "en": "Sure, I'll work out how much it takes to settle the loan today.",
    },
    i.LOAN_REPAY: {
        "zh": "好的，我来为您办理还款。扣款前会请您确认金额并完成加强认证。",
        "en": "Sure, I'll set up the repayment. Before anything is debited you confirm the amount and verify.",
    },
    i.PAYROLL_BATCH_STATUS: {
        "zh": "好的，我来为您查询代发批次的状态。",
        "en": "Sure, I'll check the status of the payroll batch.",
    },
    i.IDENTITY_LOCK_DEVICE: {
        "zh": "好的，我来帮您锁定丢失的设备。锁定后该设备上的登录全部失效，请先确认。",
        "en": "Sure, I'll lock the lost device. Every session on it will end; please confirm first.",
    },
    i.IDENTITY_REVOKE_SESSIONS: {
        "zh": "好的，我来帮您退出其他所有设备上的登录，请先确认。",
        "en": "Sure, I'll sign you out of every other device; please confirm first.",
    },
    i.HANDOFF: {
        "zh": "好的，正在为您转接人工客服，对话记录会一并转给客服，请稍候。",
        "en": "Sure, I'm passing you to a member of staff with our conversation so far; please wait a moment.",
    },
    i.COMPLAINT: {
        "zh": "很抱歉给您带来不好的体验。我已记录您的投诉，专人会在1个工作日内联系您，15个工作日内给出处理结果。",
        "en": "I'm sorry about this. I have recorded your complaint; a member of staff will contact you within 1 working day, with an outcome within 15 working days.",
    },
    i.CONFIRM_YES: {"zh": "好的，已确认。", "en": "OK, confirmed."},
    i.CONFIRM_NO: {
        "zh": "好的，已取消，没有做任何操作。",
        "en": "OK, cancelled; nothing was done.",
    },
    i.GREETING: {
        "zh": "您好，我是智能客服，可以解答贷款、还款、代发工资和账户安全的问题，也可以帮您查询和办理。",
        "en": "Hello, I'm the bank's assistant: I can answer questions on loans, repayment, payroll and account security, and look things up or act for you.",
    },
    i.THANKS: {
        "zh": "不客气，还有其他问题随时问我。",
        "en": "You're welcome; ask me anytime.",
    },
    i.UNKNOWN: {
        "zh": "抱歉，我没有完全理解您的问题。您可以换个说法，或者说“转人工”由客服为您处理。",
        "en": 'Sorry, I didn\'t quite understand. Could you put it another way, or say "talk to a human" for a member of staff?',
    },
}

# Asked when an action's slot is missing.
ASK_SLOT: dict[str, dict[Language, str]] = {
    "application_id": {
        "zh": "请问要查询哪一笔申请？请提供申请编号。",
        "en": "Which application? Please give me its application number.",
    },
    "loan_id": {
        "zh": "请问是哪一笔贷款？请提供贷款编号。",
        "en": "Which loan? Please give me its loan number.",
    },
    "batch_id": {
        "zh": "请问是哪一个代发批次？请提供批次编号。",
        "en": "Which payroll batch? Please give me its batch number.",
    },
}

# Shown instead of an answer that fails the red-line check; it passes the check itself.
SAFE_FALLBACK: dict[Language, str] = {
    "zh": "抱歉，这个问题我暂时不能直接回答。您可以在App中查看相关说明，或者说“转人工”由客服为您解答。",
    "en": 'Sorry, I can\'t answer that directly right now. You can read the details in the app, or say "talk to a human" and a member of staff will help.',
}
