"""Bank cards: Luhn validation (python-stdnum), issuer from the prefix, masking."""

from __future__ import annotations

from dataclasses import dataclass

from stdnum import luhn
from stdnum.exceptions import ValidationError

from zerocontact.platform.pii import mask_card

# A PARTIAL table of real Chinese issuer identification numbers (the first 6 digits of a
# UnionPay debit card). Real routing uses the CUP BIN file (thousands of rows); this table only
# names the bank in payslips and events, and an unknown prefix is not an error.
ISSUER_PREFIXES: dict[str, str] = {
    "622202": "ICBC",  # Industrial and Commercial Bank of China
    "622208": "ICBC",
    "621226": "ICBC",
    "621700": "CCB",  # China Construction Bank
    "622700": "CCB",
    "436742": "CCB",
    "622848": "ABC",  # Agricultural Bank of China
    "622845": "ABC",
    "621661": "BOC",  # Bank of China
    "621660": "BOC",
    "622588": "CMB",  # China Merchants Bank
    "621483": "CMB",
    "622262": "BOCOM",  # Bank of Communications
    "621799": "PSBC",  # Postal Savings Bank of China
    "622150": "PSBC",
    "622689": "CITIC",
    "622666": "CEB",  # China Everbright Bank
    "622909": "CIB",  # Industrial Bank
    "622622": "CMBC",  # China Minsheng Bank
    "621626": "PAB",  # Ping An Bank
}


class InvalidCard(ValueError):
    """Not a bank card number: wrong length, not digits, or a failed Luhn check."""


@dataclass(frozen=True, slots=True)
class Card:
    """A validated card number. ``number`` is plaintext: encrypt it before storing it."""

    number: str

    @property
    def masked(self) -> str:
        """First 6 / last 4 digits, the rest starred."""
        return mask_card(self.number)

    @property
    def bank(self) -> str:
        """The issuer's short name, or "" when the prefix is not in the (partial) table."""
        return ISSUER_PREFIXES.get(self.number[:6], "")


def parse_card(raw: str) -> Card:
    """Validate a card number (spaces and dashes allowed) and return it normalised."""
    digits = raw.replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 13 <= len(digits) <= 19:
        raise InvalidCard("a card number has 13 to 19 digits")
    try:
        luhn.validate(digits)
    except ValidationError:
        raise InvalidCard("the card number fails the Luhn check") from None
    return Card(digits)


def luhn_complete(partial: str) -> str:
    """``partial`` with its Luhn check digit appended (test data, simulators)."""
    return partial + luhn.calc_check_digit(partial)
