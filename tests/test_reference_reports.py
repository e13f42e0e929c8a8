"""The reference diff's reports: HTML and JUnit carry what the text and JSON do (the
fields compared and not compared, the verdict, the divergences with the model's events
and QEMU's trace lines), on a recorded fs-verify run on the model and on QEMU's own NVMe."""

from __future__ import annotations

import json
import lzma
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.nvme_trace import NOT_TRACED
from harness.reference import COMPARED, report_reference

LOGS = Path(__file__).parent / "fixtures" / "logs"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """``report_reference`` on the recorded pair (``fixtures/logs/README.md``)."""
    where = tmp_path_factory.mktemp("reference")
    log, trace = where / "nvme.jsonl", where / "nvme.trace"
    log.write_bytes(lzma.decompress((LOGS / "nvme-fs-verify-direct.jsonl.xz").read_bytes()))
    trace.write_bytes(lzma.decompress((LOGS / "nvme-fs-verify-reference.trace.xz").read_bytes()))
    equivalent, _ = report_reference(log, trace, where / "report")
    assert not equivalent  # the model answers some admin commands unlike QEMU (below)
    return where / "report", log, trace


def _expected(report: Path) -> dict:
    return json.loads((report / "reference.json").read_text())


def test_html_carries_verdict_fields_and_divergences(reports) -> None:
    report, log, trace = reports
    data = _expected(report)
    page = (report / "reference.html").read_text()
    header = page[page.index("<header>") : page.index("</header>")]
    assert "DIVERGED: 10 divergences" in header
    assert str(log) in header and str(trace) in header
    assert f"DIVERGED: {data['total_divergences']} divergences" in header

    def items(css: str) -> list[str]:
        block = re.search(rf'<ul class="{css}">(.*?)</ul>', page, re.S)
        assert block is not None, css
        return [re.sub("&#x27;", "'", i) for i in re.findall(r"<li>(.*?)</li>", block.group(1))]

    assert items("compared") == [t.replace("&", "&amp;") for t in COMPARED]
    assert items("not-compared") == list(NOT_TRACED)
    # each divergence: its command, the model's raw events and QEMU's trace lines
    sections = re.findall(r'<section class="divergence".*?</section>', page, re.S)
    assert len(sections) == len(data["divergences"]) == 10
    status = next(s for s in sections if "identify cns=0x6" in s)
    assert "status in both" in status and "0x002 in A, 0x000 in B" in status
    # the model's events by seq, its doorbell by the name the model declares
    assert "#263 mmio_write SQ0TDBL/4" in status and "#264 dma_read" in status
    trace_lines = trace.read_text().splitlines()
    assert re.search(r"line 151: [^<]*pci_nvme_admin_cmd", status)
    assert "pci_nvme_admin_cmd" in trace_lines[150]
    only_b = next(s for s in sections if "admin_0x7c" in s)
    assert "<em>no counterpart</em>" in only_b and "line 119:" in only_b


def test_junit_carries_verdict_fields_and_divergences(reports) -> None:
    report, log, trace = reports
    data = _expected(report)
    root = ET.parse(report / "reference.xml").getroot()
    [suite] = root.findall("testsuite")
    assert suite.get("name") == f"xvpci reference {log.name} vs {trace.name}"
    props = [(p.get("name"), p.get("value")) for p in suite.iter("property")]
    assert ("verdict", "DIVERGED") in props
    assert [v for k, v in props if k == "compared"] == list(COMPARED)
    assert [v for k, v in props if k == "not compared"] == list(NOT_TRACED)
    assert ("not compared (a side lacks them)", "data") in props
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"commands", "blocks", "registers"}
    failure = cases["commands"].find("failure")
    assert failure is not None and suite.get("failures") == "1"
    assert failure.get("message", "").startswith(f"{data['total_divergences']} divergences; first:")
    for divergence in data["divergences"]:
        assert divergence["detail"] in (failure.text or "")
    assert cases["blocks"].find("failure") is None
    out = suite.findtext("system-out") or ""
    assert out.startswith("DIVERGED") and all(f"compared: {t}" in out for t in COMPARED)


def test_equivalent_reference_reports_say_so(reports, tmp_path: Path) -> None:
    """With rules accepting the admin differences, the same pair is EQUIVALENT in both."""
    _, log, trace = reports
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[transaction]\nignore_ops = ["identify", "set_features", "get_log_page", '
        '"async_event", "admin_0x7c", "admin_0x82"]\n'
    )
    from harness.difflog import Rules

    equivalent, _ = report_reference(log, trace, tmp_path / "report", Rules.load(rules))
    assert equivalent
    page = (tmp_path / "report" / "reference.html").read_text()
    assert (
        '<span class="verdict ok">EQUIVALENT' in page
        and "divergence" not in page.split("<main>")[1].split("Timeline")[0]
    )
    suite = ET.parse(tmp_path / "report" / "reference.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert ("verdict", "EQUIVALENT") in [
        (p.get("name"), p.get("value")) for p in suite.iter("property")
    ]


def test_the_runs_junit_file_carries_the_reference_suite_once(reports, tmp_path: Path) -> None:
    """With direct and window diffed too (``report/junit.xml``), the reference suite is
    added to that file, so that CI reading one JUnit file sees every verdict; reporting
    again (``xvpci report``) does not add it twice."""
    from harness.difflog import Rules
    from harness.run import diff_both_levels

    _, log, trace = reports
    window = tmp_path / "window.jsonl"
    window.write_bytes(lzma.decompress((LOGS / "nvme-fs-verify-window.jsonl.xz").read_bytes()))
    report = tmp_path / "report"
    diff_both_levels(log, window, Rules(), "transaction", report)
    own = {s.get("name") for s in ET.parse(report / "junit.xml").getroot().findall("testsuite")}
    for _ in range(2):
        report_reference(log, trace, report)
    suites = ET.parse(report / "junit.xml").getroot().findall("testsuite")
    names = [s.get("name") for s in suites]
    reference = f"xvpci reference {log.name} vs {trace.name}"
    assert names.count(reference) == 1 and set(names) == own | {reference}
    [suite] = [s for s in suites if s.get("name") == reference]
    assert suite.get("failures") == "1" and suite.find("properties") is not None
