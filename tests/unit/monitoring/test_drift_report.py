"""sluice.monitoring.drift_report: a well-formed, self-contained page that escapes what it shows."""

from __future__ import annotations

from html.parser import HTMLParser

from sluice.monitoring import compare, render_drift_report
from tests.unit.monitoring.test_drift import replace_share

HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
VOID = {"meta", "br", "rect", "img", "link", "input", "hr"}


class Checker(HTMLParser):
    """Tags balanced, no script, no attribute or text pointing outside the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_scaled_amounts_page(household):
    captures = household.captures()
    captures["amount"] = captures["amount"] * 3
    captures["category"], _ = replace_share(captures["category"], 0.3, HOSTILE)
    report = compare(household.profile, captures, household.columns, context={"model": HOSTILE})
    page = render_drift_report(report, title="household <v3>")

    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert "script" not in checker.tags and "img" not in checker.tags
    assert not [a for a in checker.attrs if a[0] in ("src", "href", "onerror", "xmlns")]
    lowered = page.lower()
    assert "http" not in lowered and "url(" not in lowered and "@import" not in lowered
    text = "".join(checker.text)
    assert HOSTILE in text  # shown, as text (new category, context)
    assert "household <v3>" in text
    # a chart per drifted feature, with reference and current bars per bucket
    assert checker.tags.count("svg") == 2 and checker.tags.count("rect") == 2 * (22 + 21)
    assert "amount" in report["summary"]["drifted_features"] and "distribution shift: PSI" in text


def test_quiet_page(household):
    page = render_drift_report(compare(household.profile, household.captures(), household.columns))
    checker = Checker()
    checker.feed(page)
    assert checker.stack == [] and "svg" not in checker.tags
    assert 'class="alert"' not in page and 'class="none"' in page
