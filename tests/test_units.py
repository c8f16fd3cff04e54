"""Quantities: parsing, canonical formatting, exact round trips and helpful errors."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from chaoskit.units import Bandwidth, Duration, Percent, Rate, Size, UnitError


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("250ms", 250_000_000),
        ("2s", 2_000_000_000),
        ("1m30s", 90_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("1d", 86_400_000_000_000),
        ("10us", 10_000),
        ("10µs", 10_000),
        ("7ns", 7),
        ("-5m", -300_000_000_000),
        ("+2h", 7_200_000_000_000),
        (".5s", 500_000_000),
        ("1h 30m", 5_400_000_000_000),
    ],
)
def test_duration_parses_what_people_write(text: str, ns: int) -> None:
    assert Duration.parse(text).nanoseconds == ns


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (250_000_000, "250ms"),
        (90_000_000_000, "1m30s"),
        (5_400_000_000_000, "1h30m"),
        (1_500_000_000, "1.5s"),
        (-300_000_000_000, "-5m"),
        (1_000, "1us"),
        (86_400_000_000_001, "1d0.000000001s"),
    ],
)
def test_duration_formats_canonically(ns: int, text: str) -> None:
    assert str(Duration(ns)) == text


@pytest.mark.parametrize("bad", ["2 sec", "5", "abc", "", "1.5", "s", "1m-30s", "--1s", "1.s"])
def test_duration_errors_quote_the_text_and_list_the_forms(bad: str) -> None:
    with pytest.raises(UnitError) as info:
        Duration.parse(bad)
    message = str(info.value)
    assert f"'{bad}'" in message
    assert "'250ms'" in message and "'1m30s'" in message


def test_bare_number_duration_suggests_a_unit() -> None:
    with pytest.raises(UnitError, match=r"write '5s' or '5ms'"):
        Duration.parse("5")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64MiB", 64 * 1024**2),
        ("1GB", 10**9),
        ("512KiB", 512 * 1024),
        ("100B", 100),
        ("4096", 4096),
        ("1.5KiB", 1536),
        ("10 MB", 10**7),
        ("1kb", 1000),
    ],
)
def test_size_parses(text: str, size: int) -> None:
    assert Size.parse(text).bytes == size


@pytest.mark.parametrize("bad", ["1.5B", "12 parsecs", "-1MB", "MiB", "1.0000001KB"])
def test_size_errors(bad: str) -> None:
    with pytest.raises(UnitError, match="'64MiB'"):
        Size.parse(bad)


def test_rates_compare_by_value_whatever_the_period() -> None:
    assert Rate.parse("6000/min") == Rate.parse("100/s")
    assert Rate.parse("6000/min").per_second == 100.0
    assert Rate.parse("10/h") < Rate.parse("1/s")
    assert hash(Rate.parse("60/min")) == hash(Rate.parse("1/s"))


@pytest.mark.parametrize("bad", ["100", "100/fortnight", "/s", "fast"])
def test_rate_errors(bad: str) -> None:
    with pytest.raises(UnitError, match="'100/s'"):
        Rate.parse(bad)


def test_percent_keeps_what_was_written() -> None:
    assert Percent.parse("20%").fraction == 0.2
    assert Percent.parse("0.5%").percent == Decimal("0.5")
    assert str(Percent.parse("100.0%")) == "100%"
    with pytest.raises(UnitError, match=r"write '0\.5%'"):
        Percent.parse("0.5")


def test_bandwidth() -> None:
    assert Bandwidth.parse("100kB/s").bytes_per_second == 100_000
    assert str(Bandwidth.parse("1MiB/s")) == "1MiB/s"
    with pytest.raises(UnitError, match="'100kB/s'"):
        Bandwidth.parse("100kB")


class _Model(BaseModel):
    d: Duration
    s: Size
    r: Rate
    p: Percent


def test_pydantic_reads_text_and_writes_text() -> None:
    m = _Model.model_validate({"d": "1m", "s": 1024, "r": "5/s", "p": "1%"})
    assert m.model_dump(mode="json") == {"d": "1m", "s": "1KiB", "r": "5/s", "p": "1%"}
    assert _Model.model_validate(m.model_dump(mode="json")) == m


def test_pydantic_refuses_bare_numbers_with_a_hint() -> None:
    with pytest.raises(ValidationError, match="write '5s'"):
        _Model.model_validate({"d": 5, "s": 1, "r": "1/s", "p": "1%"})


def test_json_schema_describes_text_forms() -> None:
    props = _Model.model_json_schema()["properties"]
    text, zero = props["d"]["anyOf"]  # a bare 0 needs no unit
    assert text["type"] == "string" and "pattern" in text and zero == {"const": 0}
    assert {"type": "integer", "minimum": 0} in props["s"]["anyOf"]


# Round trips: formatting then parsing gives the value back, exactly.


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_duration_round_trip(ns: int) -> None:
    assert Duration.parse(str(Duration(ns))) == Duration(ns)


@given(st.integers(min_value=0, max_value=2**60))
def test_size_round_trip(n: int) -> None:
    assert Size.parse(str(Size(n))) == Size(n)


@given(st.integers(min_value=0, max_value=2**50))
def test_bandwidth_round_trip(n: int) -> None:
    assert Bandwidth.parse(str(Bandwidth(n))) == Bandwidth(n)


@given(
    st.decimals(min_value=0, max_value=10**9, allow_nan=False, places=6),
    st.sampled_from([1, 60, 3600]),
)
def test_rate_round_trip(count: Decimal, period: int) -> None:
    rate = Rate(count, period)
    assert Rate.parse(str(rate)) == rate


@given(st.decimals(min_value=-1000, max_value=1000, allow_nan=False, places=4))
def test_percent_round_trip(value: Decimal) -> None:
    assert Percent.parse(str(Percent(value))) == Percent(value)


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
def test_duration_of_seconds_is_within_a_nanosecond(seconds: float) -> None:
    assert abs(Duration.of(seconds).seconds - seconds) <= 1e-9 * max(1.0, abs(seconds))


def test_quantities_compare_only_within_their_kind() -> None:
    assert Duration(1) != Size(1)
    assert sorted([Rate.parse("1/s"), Rate.parse("30/min")]) == [
        Rate.parse("0.5/s"),
        Rate.parse("1/s"),
    ]
    assert repr(Duration.parse("90s")) == "Duration('1m30s')"
    with pytest.raises(TypeError):
        _ = Duration(1) < Size(1)  # type: ignore[operator]
