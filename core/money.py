"""Money as integer minor units. A float never holds an amount anywhere in storepulse."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

# ISO 4217 (list one, active codes) -> number of minor-unit digits.
# Funds codes and precious metals without a minor unit (XAU, XDR, ...) are not currencies a shop sells in.
_EXPONENTS_TEXT = """
AED 2 AFN 2 ALL 2 AMD 2 ANG 2 AOA 2 ARS 2 AUD 2 AWG 2 AZN 2 BAM 2 BBD 2 BDT 2 BGN 2 BHD 3 BIF 0
BMD 2 BND 2 BOB 2 BOV 2 BRL 2 BSD 2 BTN 2 BWP 2 BYN 2 BZD 2 CAD 2 CDF 2 CHE 2 CHF 2 CHW 2 CLF 4
CLP 0 CNY 2 COP 2 COU 2 CRC 2 CUP 2 CVE 2 CZK 2 DJF 0 DKK 2 DOP 2 DZD 2 EGP 2 ERN 2 ETB 2 EUR 2
FJD 2 FKP 2 GBP 2 GEL 2 GHS 2 GIP 2 GMD 2 GNF 0 GTQ 2 GYD 2 HKD 2 HNL 2 HTG 2 HUF 2 IDR 2 ILS 2
INR 2 IQD 3 IRR 2 ISK 0 JMD 2 JOD 3 JPY 0 KES 2 KGS 2 KHR 2 KMF 0 KPW 2 KRW 0 KWD 3 KYD 2 KZT 2
LAK 2 LBP 2 LKR 2 LRD 2 LSL 2 LYD 3 MAD 2 MDL 2 MGA 2 MKD 2 MMK 2 MNT 2 MOP 2 MRU 2 MUR 2 MVR 2
MWK 2 MXN 2 MXV 2 MYR 2 MZN 2 NAD 2 NGN 2 NIO 2 NOK 2 NPR 2 NZD 2 OMR 3 PAB 2 PEN 2 PGK 2 PHP 2
PKR 2 PLN 2 PYG 0 QAR 2 RON 2 RSD 2 RUB 2 RWF 0 SAR 2 SBD 2 SCR 2 SDG 2 SEK 2 SGD 2 SHP 2 SLE 2
SOS 2 SRD 2 SSP 2 STN 2 SVC 2 SYP 2 SZL 2 THB 2 TJS 2 TMT 2 TND 3 TOP 2 TRY 2 TTD 2 TWD 2 TZS 2
UAH 2 UGX 0 USD 2 USN 2 UYI 0 UYU 2 UYW 4 UZS 2 VED 2 VES 2 VND 0 VUV 0 WST 2 XAF 0 XCD 2 XCG 2
XOF 0 XPF 0 YER 2 ZAR 2 ZMW 2 ZWG 2
"""
_words = _EXPONENTS_TEXT.split()
EXPONENTS: dict[str, int] = {_words[i]: int(_words[i + 1]) for i in range(0, len(_words), 2)}


class UnknownCurrency(ValueError):
    pass


def exponent(currency: str) -> int:
    """Minor-unit digits of an ISO 4217 code (JPY 0, EUR 2, KWD 3)."""
    try:
        return EXPONENTS[currency]
    except KeyError:
        raise UnknownCurrency(f"unknown currency {currency!r}: expected an ISO 4217 code such as EUR") from None


def normalise_currency(code: object) -> str:
    """Upper-cases and checks a vendor's currency code ('usd' -> 'USD')."""
    if not isinstance(code, str):
        raise UnknownCurrency(f"currency must be a string, got {code!r}")
    upper = code.upper()
    exponent(upper)
    return upper


_MAX_MINOR = 2**63 - 1
# A plain decimal: ASCII digits (`\d` would take "٥"), at most one point with digits on both sides,
# no exponent, spaces, "_" or "+". A minus is read so that the caller can say the amount is negative.
_PLAIN = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")

# What to do with decimals beyond the currency's (0.001 EUR): "refuse" them, take them when they are
# all "zeros" (exact), or "round" half up. Each vendor adapter says which its fields need, and why.
ExtraDecimals = Literal["refuse", "zeros", "round"]


def to_minor(value: str | int | Decimal, currency: str, extra: ExtraDecimals = "refuse") -> int:
    """Minor units of a decimal amount: a string written `-?[0-9]+(\\.[0-9]+)?` ("12.34", "7"), an
    int of major units, or a Decimal. ValueError saying what is wrong otherwise.

    By default an amount with more decimals than the currency has ("0.001" EUR, "1.5" JPY) is refused:
    no one paid it, and rounding would make up a figure. Negative amounts come back negative: the
    caller refuses them with core.limits.amount_problem, in its own field's name. Floats are refused:
    their binary value is not the decimal the vendor meant. So is an amount no 64-bit integer of
    minor units holds: the log keeps 64-bit integers.
    """
    if isinstance(value, float) or isinstance(value, bool):
        raise TypeError("amounts must be given as str, int or Decimal, never float")
    exp = exponent(currency)
    if isinstance(value, str):
        m = _PLAIN.fullmatch(value)
        if m is None:
            raise ValueError(f"not a plain decimal amount such as \"12.34\" (ASCII digits and one point): {_show(value)}")
        sign, whole, frac = m.group(1), m.group(2).lstrip("0") or "0", m.group(3) or ""
        if len(whole) > 19:  # before int(): a 5,000-digit string is no amount either
            raise ValueError(f"out of range: {_show(value)}")
        up = 0
        if len(frac) > exp:
            frac, dropped = frac[:exp], frac[exp:]
            if extra == "round":
                up = dropped[0] >= "5"  # half up, away from zero for a negative amount
            elif extra == "refuse" or dropped.strip("0"):
                raise ValueError(f"{_show(value)} has more decimals than {currency} has ({exp})")
        minor = int(whole + frac.ljust(exp, "0")) + up
        minor = -minor if sign else minor
    elif isinstance(value, int):
        minor = value * 10**exp
    else:
        minor = _decimal_minor(value, currency, extra)
    if not -_MAX_MINOR <= minor <= _MAX_MINOR:
        raise ValueError(f"out of range: {_show(value)}")
    return minor


def _decimal_minor(value: Decimal, currency: str, extra: ExtraDecimals) -> int:
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {value}")
    if value.adjusted() >= 30:  # 1E+999999 would take the context all its digits
        raise ValueError(f"out of range: {value}")
    scaled = value.scaleb(exponent(currency))
    exact = scaled.to_integral_value()
    if scaled != exact:
        if extra != "round":
            raise ValueError(f"{value} has more decimals than {currency} has ({exponent(currency)})")
        exact = scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(exact)


def _show(value: object) -> str:
    """repr() for a message, shortened: the sender needs to recognise its value, not get it all back."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def divide_half_up(numerator: int, denominator: int) -> int:
    """Integer division rounded half away from zero; 0 when the denominator is 0."""
    if denominator == 0:
        return 0
    quotient, remainder = divmod(abs(numerator), abs(denominator))
    if remainder * 2 >= abs(denominator):
        quotient += 1
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


@dataclass(frozen=True, slots=True)
class Money:
    amount: int  # minor units
    currency: str

    def to_json(self) -> dict[str, object]:
        """With the currency's ISO 4217 exponent, so a client divides by the same 10**exponent as the
        server (a browser's Intl digits differ for IQD, ALL, IRR, LAK, LBP, MMK, SOS, SYP, YER)."""
        return {"amount": self.amount, "currency": self.currency, "exponent": EXPONENTS[self.currency]}

    def __str__(self) -> str:
        exp = exponent(self.currency)
        return f"{Decimal(self.amount).scaleb(-exp):.{exp}f} {self.currency}"
