"""Minor units <-> major units, by ISO 4217 exponent; exact or an error, never rounded."""

from decimal import Decimal, InvalidOperation

# fmt: off
_ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
    "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
})
# fmt: on
_THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def exponent(currency: str) -> int:
    """Digits after the decimal point in the currency's major unit (JPY 0, USD 2, KWD 3)."""
    code = currency.upper()
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def to_major(amount_minor: int, currency: str) -> Decimal:
    """1234 USD cents -> Decimal("12.34"); 1234 JPY -> Decimal("1234")."""
    return Decimal(amount_minor).scaleb(-exponent(currency))


def to_minor(amount_major: Decimal | int | float | str, currency: str) -> int:
    """Decimal("12.34") USD -> 1234; raise ValueError if the amount has sub-minor precision."""
    if isinstance(amount_major, bool):
        raise ValueError("a bool is not an amount")
    # repr() is the shortest string that round-trips, so 10.05 stays 10.05 and not 10.0499...
    text = repr(amount_major) if isinstance(amount_major, float) else amount_major
    try:
        major = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"{amount_major!r} is not an amount") from exc
    if not major.is_finite():
        raise ValueError(f"{amount_major!r} is not an amount")
    minor = major.scaleb(exponent(currency))
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount_major} {currency} is finer than the currency's minor unit")
    return int(minor)
