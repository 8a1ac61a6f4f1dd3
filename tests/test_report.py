"""The report: schema, verdict order, the four renderers, the diff, and report.html in a real browser."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fixtures_report import sample_report, scenario
from junitparser import Error, Failure, JUnitXml, Skipped
from lxml import html as lxml_html

from conformance.catalogue import LEVELS
from conformance.pec.constants import Kind
from conformance.report import (
    FILES,
    VERDICTS,
    ReportError,
    check_summary,
    diff_exit_code,
    diff_reports,
    format_diff,
    is_empty,
    load_report,
    to_html,
    to_junit,
    to_markdown,
    validate_report,
    worst,
    write_reports,
)
from conformance.report.diff import classify
from conformance.report.model import report_schema
from conformance.report.render import docs_base
from conformance.report.sequence import layout

CHROMIUM = Path("/usr/bin/chromium")
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "report.schema.json"


# ---- schema ---------------------------------------------------------------------------------------


def test_sample_report_is_valid_and_consistent():
    report = sample_report()
    assert validate_report(report) == []
    assert check_summary(report) == []
    assert {s["verdict"] for s in report["scenarios"]} == {"PASS", "FAIL", "SKIP", "XFAIL", "ERROR"}


def test_schema_is_draft_2020_12_and_matches_the_code():
    from jsonschema import Draft202012Validator

    schema = report_schema()
    assert schema == json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))  # the packaged file is schemas/'s
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    defs = schema["$defs"]
    assert set(defs["verdict"]["enum"]) == set(VERDICTS)
    assert set(defs["level"]["enum"]) == set(LEVELS)
    assert set(defs["event"]["properties"]["kind"]["enum"]) == {str(k) for k in Kind} | {None}


def _closed_objects(node, path="#"):
    """Every object schema with properties, with where it is."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from _closed_objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _closed_objects(value, f"{path}/{i}")


#: Properties a report may leave out, by where they are: present only when the run says something.
OPTIONAL = {"#/properties/run": {"stopped"}}


def test_schema_is_strict_everywhere():
    objects = list(_closed_objects(report_schema()))
    assert len(objects) >= 10
    for where, node in objects:
        assert node.get("additionalProperties") is False, where
        if not where.endswith("/counts"):
            assert set(node["required"]) == set(node["properties"]) - OPTIONAL.get(where, set()), where


@pytest.mark.parametrize("where", ["top", "suite", "run", "target", "summary", "scenario", "event", "finding",
                                   "requirement"])
def test_unknown_properties_are_rejected(where):
    report = sample_report()
    node = {
        "top": report,
        "suite": report["suite"],
        "run": report["run"],
        "target": report["target"],
        "summary": report["summary"],
        "scenario": report["scenarios"][1],
        "event": report["scenarios"][1]["events"][0],
        "finding": report["scenarios"][1]["findings"][1],
        "requirement": report["requirements"][0],
    }[where]
    node["surprise"] = 1
    errors = validate_report(report)
    assert errors and any("surprise" in e for e in errors), errors


@pytest.mark.parametrize("path", [
    ("format",), ("run", "id"), ("run", "started"), ("target", "profile"), ("summary", "unexpected"),
    ("scenarios", 1, "expected"), ("scenarios", 1, "reason"), ("scenarios", 1, "error"),
    ("scenarios", 1, "events", 0, "kind"), ("scenarios", 1, "events", 0, "message_id"),
    ("scenarios", 1, "findings", 1, "actual"), ("scenarios", 1, "findings", 1, "expected_verdict"),
    ("requirements", 0, "audit_only"),
])
def test_missing_required_fields_are_rejected(path):
    report = sample_report()
    node = report
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    errors = validate_report(report)
    assert any(f"'{path[-1]}' is a required property" in e for e in errors), errors


@pytest.mark.parametrize("path, value", [
    (("format",), "pec-conformance-report/2"),
    (("scenarios", 1, "verdict"), "OK"),
    (("scenarios", 1, "findings", 1, "verdict"), "fail"),
    (("scenarios", 1, "findings", 1, "requirements"), ["ENV-3"]),
    (("scenarios", 1, "requirements"), {"env-03": "FAIL"}),
    (("scenarios", 1, "expected"), "XFAIL"),
    (("scenarios", 1, "events", 2, "kind"), "envelope"),
    (("scenarios", 1, "events", 2, "evidence"), "/etc/passwd"),
    (("scenarios", 1, "evidence", 0), "../../secret.eml"),
    (("scenarios", 1, "findings", 1, "evidence"), "javascript:alert(1)"),
    (("scenarios", 1, "id"), "has space"),
    (("run", "started"), "2025-11-19T10:15:00+01:00"),
    (("run", "jobs"), 0),
    (("summary", "exit_code"), 3),
    (("summary", "scenarios", "PASS"), -1),
    (("target", "kind"), "live"),
    (("requirements", 0, "id"), "ACC-123"),
    (("requirements", 0, "level"), "must"),
])
def test_bad_values_are_rejected(path, value):
    report = sample_report()
    node = report
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert validate_report(report), f"{path} = {value!r} accepted"


def test_duplicate_ids_and_inconsistent_summary_are_reported():
    report = sample_report()
    report["scenarios"].append(copy.deepcopy(report["scenarios"][0]))
    assert any("duplicate id 'acceptance.base'" in e for e in validate_report(report))
    report = sample_report(summary__unexpected=0, summary__exit_code=0)
    assert validate_report(report) == []  # structurally fine...
    errors = check_summary(report)  # ...but it contradicts its own scenarios
    assert any("summary.unexpected" in e for e in errors) and any("exit_code" in e for e in errors)


def test_load_report(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(sample_report()), encoding="utf-8")
    assert load_report(path, validate=True) == sample_report()
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ReportError, match="cannot read"):
        load_report(path)
    path.write_text(json.dumps({"format": "x"}), encoding="utf-8")
    assert load_report(path) == {"format": "x"}
    with pytest.raises(ReportError, match="not a valid") as info:
        load_report(path, validate=True)
    assert info.value.errors


# ---- verdict order --------------------------------------------------------------------------------


def test_verdict_order():
    assert VERDICTS == ("FAIL", "ERROR", "XPASS", "WARN", "XFAIL", "BLOCKED", "PASS", "REVIEW", "INFO", "SKIP")
    for i, higher in enumerate(VERDICTS):
        for lower in VERDICTS[i + 1:]:
            assert worst([lower, higher]) == higher
            assert worst([higher, lower]) == higher
    assert worst(["PASS", "XPASS", "WARN"]) == "XPASS"  # an unexpected pass is louder than a warning
    assert worst(["PASS", "REVIEW"]) == "PASS"
    assert worst(["SKIP", "INFO"]) == "INFO"
    assert worst([]) == "SKIP"
    assert worst(iter(["PASS"])) == "PASS"
    with pytest.raises(ValueError, match="unknown verdict"):
        worst(["PASS", "OK"])


# ---- renderers ------------------------------------------------------------------------------------


def test_write_reports_writes_four_files(tmp_path):
    report = sample_report()
    paths = write_reports(report, tmp_path / "out")
    assert set(paths) == {"json", "html", "junit", "markdown"}
    assert {p.name for p in paths.values()} == set(FILES.values()) == {
        "report.json", "report.html", "junit.xml", "summary.md"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(FILES.values())  # no temp files left
    text = paths["json"].read_text(encoding="utf-8")
    assert json.loads(text) == report
    assert list(json.loads(text)) == list(report)  # the model's order, not sorted keys
    assert text.startswith('{\n "format": "pec-conformance-report/1",\n "suite"')
    assert "L'utente invia" in text and "\\u" not in text  # ensure_ascii=False
    assert paths["html"].read_text(encoding="utf-8") == to_html(report, docs_base(tmp_path / "out"))
    assert paths["junit"].read_text(encoding="utf-8") == to_junit(report)
    assert paths["markdown"].read_text(encoding="utf-8") == to_markdown(report)


def test_write_reports_refuses_an_invalid_report_but_keeps_its_json(tmp_path):
    report = sample_report()
    report["scenarios"][0]["verdict"] = "GREAT"
    with pytest.raises(ReportError, match="not a valid report") as info:
        write_reports(report, tmp_path)
    assert any("GREAT" in e for e in info.value.errors)
    assert (tmp_path / "report.json").exists()
    assert not (tmp_path / "report.html").exists()


def test_junit_reads_back_with_one_testcase_per_scenario(tmp_path):
    report = sample_report()
    path = write_reports(report, tmp_path)["junit"]
    xml = JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert suite.name == "pec-conformance"
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (5, 1, 1, 1)
    cases = {case.name: case for case in suite}
    assert set(cases) == {s["id"] for s in report["scenarios"]}
    for s in report["scenarios"]:
        assert cases[s["id"]].classname == f"pec.{s['family']}"
    failure = cases["delivery.completa"].result
    assert len(failure) == 1 and isinstance(failure[0], Failure)
    for rid in ("ENV-03", "CON-08", "CON-23"):
        assert rid in failure[0].message
        assert rid in failure[0].text
    assert "Envelope Date:" in failure[0].message
    assert isinstance(cases["virus.rilevazione"].result[0], Error)
    assert "421" in cases["virus.rilevazione"].result[0].message
    assert isinstance(cases["timeout.preavviso-12h"].result[0], Skipped)
    xfail = cases["anomaly.unsigned"]
    assert xfail.is_passed
    assert "expected failure: Known deviation PEC-1234" in xfail.system_out
    assert cases["acceptance.base"].is_passed
    # Every testcase element carries name and classname (CI reporters reject one without).
    for element in ET.parse(path).getroot().iter("testcase"):
        assert element.get("name") and element.get("classname") and element.get("time")


def test_junit_an_unexpected_pass_is_a_failure():
    report = sample_report()
    s = scenario(report, "anomaly.unsigned")
    s["verdict"] = "XPASS"
    s["requirements"]["ANO-08"] = "XPASS"
    s["findings"][2].update(verdict="XPASS", message="Reply-To: present as required")
    report = sample_report(scenarios=report["scenarios"])
    assert validate_report(report) == [] and check_summary(report) == []
    xml = JUnitXml.fromstring(to_junit(report).encode("utf-8"))
    suite = next(iter(xml))
    assert suite.failures == 2
    case = next(c for c in suite if c.name == "anomaly.unsigned")
    assert isinstance(case.result[0], Failure)
    assert "unexpected pass" in case.result[0].message and "PEC-1234" in case.result[0].message
    assert "ANO-08" in case.result[0].text


def test_junit_survives_characters_xml_cannot_carry():
    report = sample_report()
    scenario(report, "delivery.completa")["findings"][1]["actual"] = "bad\x00byte\x1b[0m"
    ET.fromstring(to_junit(report).encode("utf-8"))


def test_markdown_names_the_failing_scenario_and_its_requirements(tmp_path):
    text = write_reports(sample_report(), tmp_path)["markdown"].read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert "FAIL" in first and "exit code 1" in first
    assert "`delivery.completa`" in text
    for rid in ("ENV-03", "CON-08", "CON-23"):
        assert rid in text
    assert "Envelope Date: is not the acceptance time" in text
    assert "`virus.rilevazione`" in text and "VIR-07" in text
    assert "acceptance.base" not in text  # passing scenarios are not listed
    assert "| scenarios |" in text
    assert len(text.splitlines()) <= 60


def test_markdown_stays_short_and_escapes_target_text():
    report = sample_report()
    base = scenario(report, "delivery.completa")
    many = []
    for i in range(120):
        s = copy.deepcopy(base)
        s["id"] = f"delivery.copy-{i:03d}"
        many.append(s)
    many[0]["findings"][1]["message"] = "evil | <img src=x onerror=alert(1)> [link](http://x)"
    report = sample_report(scenarios=many + report["scenarios"])
    text = to_markdown(report)
    lines = text.splitlines()
    assert len(lines) <= 60
    assert re.search(r"\.\.\. and \d+ more", text)
    assert not re.search(r"(?<!\\)<img", text) and "\\<img" in text and "evil \\|" in text


def test_html_is_self_contained_escaped_and_linked():
    report = sample_report()
    scenario(report, "acceptance.base")["title"] = "<script>alert('x')</script> title"
    page = to_html(report)
    assert "<script>alert(" not in page and "&lt;script&gt;alert(" in page
    assert not re.search(r"<(link|img|iframe)\b", page)
    assert not re.search(r"""\b(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert len(re.findall(r"<script\b", page)) == 1  # only the small filter
    doc = lxml_html.fromstring(page)
    for what in ("scenarios", "requirements", "findings"):
        for verdict in VERDICTS:
            cell = doc.get_element_by_id(f"summary-{what}-{verdict}")
            assert cell.text_content() == str(report["summary"][what][verdict])
    assert doc.get_element_by_id("exit-code").text_content() == "1"
    section = doc.get_element_by_id("scenario-delivery.completa")
    arrows = section.xpath(".//*[local-name()='svg']//*[local-name()='g'][contains(@class, 'arrow')]")
    assert len(arrows) == len(scenario(report, "delivery.completa")["events"])
    hrefs = section.xpath(".//*[local-name()='svg']//*[local-name()='a']/@href")
    assert "evidence/delivery.completa/003-in-busta-trasporto.eml" in hrefs
    assert all(not h.startswith(("/", "http", "file:")) for h in doc.xpath("//a/@href"))
    # Problems are highlighted; the audit-only requirement shows REVIEW in the matrix.
    assert section.xpath(".//table[contains(@class,'findings')]//tr[contains(@class,'problem')]")
    log01 = doc.get_element_by_id("requirement-LOG-01")
    assert "REVIEW" in log01.text_content()


def _blocked(report):
    """``sample_report`` with the timeout scenario BLOCKED: its precondition (an acceptance) failed."""
    s = scenario(report, "timeout.preavviso-12h")
    s.update(verdict="BLOCKED", requirements={"TMO-02": "BLOCKED"})
    s["findings"] = [{**scenario(report, "acceptance.base")["findings"][0], "check": "scenario.precondition",
                      "requirements": ["TMO-02"], "verdict": "BLOCKED", "evidence": None,
                      "message": "not exercised: the target sent no acceptance (ACC-12), so no timer started"}]
    s["evidence"] = ["evidence/timeout.preavviso-12h/002-smtp-submission.txt"]
    next(r for r in report["requirements"] if r["id"] == "TMO-02")["verdict"] = "BLOCKED"
    return sample_report(scenarios=report["scenarios"], requirements=report["requirements"])


def test_html_opens_with_the_requirements_that_need_attention():
    report = _blocked(sample_report())
    page = to_html(report, "../../docs/")
    doc = lxml_html.fromstring(page)
    sections = [el.get("id") for el in doc.xpath("//main/section")]
    assert sections[0] == "attention" and sections.index("summary") < sections.index("scenario-list")
    rows = doc.xpath("//section[@id='attention']//table[contains(@class,'triage')]/tbody/tr")
    listed = [(tr.xpath("string(td[1])"), tr.xpath("string(td[2])")) for tr in rows]
    # most severe first: FAIL, then ERROR, then BLOCKED; PASS, WARN, XFAIL, REVIEW and SKIP are not listed
    assert listed == [("FAIL", "ENV-03"), ("FAIL", "CON-08"), ("FAIL", "CON-23"), ("ERROR", "VIR-07"),
                      ("BLOCKED", "TMO-02")]
    card = doc.get_element_by_id("attention-ENV-03")
    text = card.text_content()
    assert "the very instant reported by the accettazione" in text  # the statement
    assert "delivery.completa" in text and "Wed, 19 Nov 2025 10:15:03 +0100" in text  # scenario, expected
    assert "Wed, 19 Nov 2025 10:15:09 +0100" in text  # actual
    hrefs = card.xpath(".//a/@href")
    assert "evidence/delivery.completa/003-in-busta-trasporto.eml" in hrefs  # the message
    assert "evidence/delivery.completa/003-in-busta-trasporto.smtp.txt" in hrefs  # the SMTP transcript
    assert "../../docs/requirements.md#env-03" in hrefs
    blocked = doc.get_element_by_id("attention-TMO-02")
    assert "not exercised" in blocked.text_content()
    assert "evidence/timeout.preavviso-12h/002-smtp-submission.txt" in blocked.xpath(".//a/@href")
    # scenarios: failing first, open; passing collapsed
    order = [el.get("data-verdict") for el in doc.xpath("//section[@id='scenarios']/section")]
    assert order == ["FAIL", "ERROR", "XFAIL", "BLOCKED", "PASS"]
    for el in doc.xpath("//section[@id='scenarios']/section"):
        opened = el.xpath("./details/@open")
        assert bool(opened) == (el.get("data-verdict") in ("FAIL", "ERROR", "BLOCKED")), el.get("id")
    # passing findings are inside a closed <details>
    passing = doc.get_element_by_id("scenario-acceptance.base").xpath(".//details[contains(@class,'sub')]")
    assert passing and "3 passing findings" in passing[0].text_content() and passing[0].get("open") is None
    # the matrix: rows needing attention first, PASS rows last
    shown = [tr.get("data-v") for tr in doc.xpath("//table[@id='matrix']/tbody/tr")]
    assert shown[:6] == ["FAIL", "FAIL", "FAIL", "ERROR", "WARN", "XFAIL"] and shown[-3:] == ["PASS"] * 3


def test_markdown_lists_blocked_scenarios_on_one_line():
    from conformance.report.markdown import MAX_LINES

    text = to_markdown(_blocked(sample_report()))
    assert "**Blocked** (not exercised: a precondition failed): `timeout.preavviso-12h`" in text
    assert len(text.splitlines()) <= MAX_LINES


def test_a_clean_run_says_nothing_needs_attention():
    report = sample_report()
    report["scenarios"] = [s for s in report["scenarios"] if s["verdict"] == "PASS"]
    report["requirements"] = [r for r in report["requirements"] if r["verdict"] in ("PASS", "REVIEW")]
    page = to_html(sample_report(scenarios=report["scenarios"], requirements=report["requirements"]))
    doc = lxml_html.fromstring(page)
    assert doc.get_element_by_id("nothing-needs-attention") is not None
    assert not doc.xpath("//table[contains(@class,'triage')]")


ID_TEXT = re.compile(r"\b(?:[A-Z]{3}-\d{2}|D\d{1,2})\b")


def test_every_requirement_and_decision_id_links_to_docs():
    from conformance.catalogue import load_catalogue, load_decisions

    report = _blocked(sample_report())
    finding = scenario(report, "delivery.completa")["findings"][1]
    finding.update(decision="D33", message=finding["message"] + " (see D16 and ACC-12)")
    doc = lxml_html.fromstring(to_html(report, "../../docs/"))
    known = set(load_catalogue().ids()) | set(load_decisions())
    seen = 0
    for node in doc.xpath("//body//text()[not(ancestor::script) and not(ancestor::style)]"):
        for ident in ID_TEXT.findall(node):
            if ident not in known:
                continue
            seen += 1
            link = node.getparent()
            assert link.tag == "a" and node.is_text, (ident, node)
            page = "decisions.md" if ident.startswith("D") else "requirements.md"
            assert link.get("href") == f"../../docs/{page}#{ident.lower()}", (ident, link.get("href"))
    assert seen > 40
    # without a docs folder (an installed copy) the IDs link to their place on the page
    doc = lxml_html.fromstring(to_html(report))
    assert doc.xpath("//a[@href='#requirement-ENV-03']") and doc.xpath("//a[@href='#decision-D33']")
    assert doc.get_element_by_id("decision-D33") is not None


def test_html_shouts_an_unexpected_pass():
    report = sample_report()
    s = scenario(report, "anomaly.unsigned")
    s["verdict"] = "XPASS"
    page = to_html(sample_report(scenarios=report["scenarios"]))
    assert page.count('class="alert xpass"') == 2  # at the top and in the scenario
    assert "Unexpected pass" in page


def test_sequence_layout_orders_parties_and_events():
    events = scenario(sample_report(), "delivery.completa")["events"]
    shuffled = list(reversed(events))
    diagram = layout(shuffled, bad_evidence={events[2]["evidence"]})
    assert [p["name"] for p in diagram["parties"]] == ["user", "target-access", "target-incoming", "counterpart"]
    assert [a["y"] for a in diagram["arrows"]] == sorted(a["y"] for a in diagram["arrows"])
    assert [a["label"] for a in diagram["arrows"]][0] == "SMTP submission"
    assert [a["problem"] for a in diagram["arrows"]] == [False, False, True, False, False, False]
    assert "busta-trasporto" in diagram["arrows"][2]["detail"] and "+0.5 s" in diagram["arrows"][2]["detail"]
    loop = layout([{"at": 0, "from": "counterpart", "to": "counterpart", "label": "retry", "kind": None,
                    "message_id": None, "evidence": None}])
    assert loop["arrows"][0]["self"] and loop["arrows"][0]["href"] is None
    empty = layout([])
    assert empty["parties"] == [] and empty["arrows"] == []


# ---- diff -----------------------------------------------------------------------------------------


def _volatile_changes(report):
    """The same results, another run: new IDs, times, durations, Message-IDs, paths and actual values."""
    report = copy.deepcopy(report)
    report["run"].update(id="20251120T080000Z-0001", started="2025-11-20T08:00:00Z",
                         finished="2025-11-20T08:02:00Z", duration_s=120.0, host="ci-runner-07")
    for s in report["scenarios"]:
        s["started"] = "2025-11-20T08:00:30Z"
        s["duration_s"] += 3.5
        s["evidence"] = [p.replace("evidence/", "evidence-2/") for p in s["evidence"]]
        for e in s["events"]:
            e["at"] += 0.25
            e["message_id"] = "<other.0@pec.example.it>" if e["message_id"] else None
            e["evidence"] = e["evidence"].replace("evidence/", "evidence-2/") if e["evidence"] else None
        for f in s["findings"]:
            if f["actual"] is not None:
                f["actual"] = f["actual"] + " (at 08:00:31, <other.0@pec.example.it>)"
            if f["evidence"]:
                f["evidence"] = f["evidence"].replace("evidence/", "evidence-2/")
    return report


def test_diff_ignores_volatile_fields():
    old = sample_report()
    new = _volatile_changes(old)
    assert validate_report(new) == []
    d = diff_reports(old, new)
    assert is_empty(d), d
    assert diff_exit_code(d) == 0
    assert format_diff(d).splitlines()[-1].startswith("No change")
    assert d["context"]["old"]["run"] != d["context"]["new"]["run"]


def test_diff_pass_to_fail_is_a_regression_and_back_a_fix():
    old = sample_report()
    new = copy.deepcopy(old)
    s = scenario(new, "acceptance.base")
    s["verdict"] = "FAIL"
    s["requirements"]["ACC-15"] = "FAIL"
    s["findings"][2].update(verdict="FAIL", message="PEC msgid lacks the domain part")
    new["requirements"][2]["verdict"] = "FAIL"
    d = diff_reports(old, new)
    assert {(i["kind"], i["id"], i["old"], i["new"]) for i in d["regressions"]} == {
        ("scenario", "acceptance.base", "PASS", "FAIL"),
        ("requirement", "ACC-15", "PASS", "FAIL"),
        ("finding", "acceptance.base/acceptance.msgid [ACC-15]", "PASS", "FAIL"),
    }
    assert d["fixes"] == [] and d["new"] == [] and d["removed"] == []
    assert diff_exit_code(d) == 1
    text = format_diff(d)
    assert "Regressions" in text and "acceptance.base" in text and "PASS -> FAIL" in text

    back = diff_reports(new, old)
    assert [i["id"] for i in back["fixes"]] == ["acceptance.base", "ACC-15", "acceptance.base/acceptance.msgid [ACC-15]"]
    assert back["regressions"] == [] and diff_exit_code(back) == 0


def test_diff_a_new_failing_check_in_an_already_failing_scenario_is_a_regression():
    old = sample_report()
    new = copy.deepcopy(old)
    findings = scenario(new, "delivery.completa")["findings"]
    findings[0] = {**findings[0], "verdict": "FAIL", "message": "Accettazione Date: is missing"}
    d = diff_reports(old, new)
    assert [i["id"] for i in d["regressions"]] == ["delivery.completa/acceptance.headers [ACC-12]"]


def test_diff_lists_new_and_removed_scenarios_checks_and_requirements():
    old = sample_report()
    new = copy.deepcopy(old)
    new["scenarios"] = [s for s in new["scenarios"] if s["id"] != "timeout.preavviso-12h"]
    added = copy.deepcopy(scenario(new, "acceptance.base"))
    added["id"] = "acceptance.multi"
    new["scenarios"].append(added)
    scenario(new, "delivery.completa")["findings"].append(
        {**scenario(new, "delivery.completa")["findings"][0], "check": "acceptance.date"})
    new["requirements"] = [r for r in new["requirements"] if r["id"] != "LOG-03"]
    d = diff_reports(old, new)
    assert {(i["kind"], i["id"]) for i in d["new"]} == {
        ("scenario", "acceptance.multi"), ("finding", "delivery.completa/acceptance.date [ACC-12]")}
    assert {(i["kind"], i["id"]) for i in d["removed"]} == {
        ("scenario", "timeout.preavviso-12h"), ("requirement", "LOG-03")}
    assert d["regressions"] == [] and d["fixes"] == [] and d["changed"] == []
    text = format_diff(d)
    assert "New (only in the new report): 2" in text and "Removed (only in the old report): 2" in text


def test_diff_ignores_volatile_values_inside_messages():
    old = sample_report()
    new = copy.deepcopy(old)
    for i, (a, b) in enumerate(zip(old["scenarios"], new["scenarios"], strict=True)):
        stamp = [("19/11/2025 10:15:02 (+0100) for <x.1@pec.example.it> from tf9726cc5@pec.example.it",
                  "20/11/2025 08:00:31 (+0100) for <y.2@pec.example.it> from t0b1c2d3e@pec.example.it"),
                 ("Date Wed, 19 Nov 2025 10:15:02 +0100 at 127.0.0.1:54741 in 3.25 s, id opec2102.20251119",
                  "Date Thu, 20 Nov 2025 08:00:31 +0100 at 127.0.0.1:40011 in 0.75 s, id opec9911.20251120")][i % 2]
        for fa, fb in zip(a["findings"], b["findings"], strict=True):
            fa["message"] += " " + stamp[0]
            fb["message"] += " " + stamp[1]
    d = diff_reports(old, new)
    assert is_empty(d), d
    # A rule's value is not volatile: 12 h became 24 h is a change.
    scenario(new, "acceptance.base")["findings"][0]["message"] = "the 24 h notice"
    scenario(old, "acceptance.base")["findings"][0]["message"] = "the 12 h notice"
    assert [i["kind"] for i in diff_reports(old, new)["changed"]] == ["finding"]


def test_diff_a_note_that_comes_or_goes_is_not_a_change():
    old = sample_report()
    new = copy.deepcopy(old)
    notes = scenario(new, "delivery.completa")["findings"]
    notes.append({**notes[4], "check": "scenario.relayed", "message": "a receipt made by the counterpart"})
    assert is_empty(diff_reports(old, new)) and is_empty(diff_reports(new, old))
    notes[0] = {**notes[0], "verdict": "INFO"}  # a PASS that became a note is still reported
    assert [i["id"] for i in diff_reports(old, new)["changed"]] == ["delivery.completa/acceptance.headers [ACC-12]"]


def test_format_diff_lists_regressions_then_fixes_then_a_capped_list_of_other_changes():
    old = sample_report()
    new = copy.deepcopy(old)
    scenario(new, "acceptance.base")["verdict"] = "FAIL"
    scenario(old, "delivery.completa")["verdict"] = "FAIL"
    scenario(new, "delivery.completa")["verdict"] = "PASS"
    for n in range(40):
        scenario(new, "acceptance.base")["findings"].append(
            {**scenario(new, "acceptance.base")["findings"][0], "check": f"extra.check{n:02d}"})
    d = diff_reports(old, new)
    text = format_diff(d)
    lines = text.splitlines()
    first = {title: next(i for i, line in enumerate(lines) if line.startswith(title))
             for title in ("Differences:", "Regressions", "Fixes", "New")}
    assert first["Differences:"] < first["Regressions"] < first["Fixes"] < first["New"]
    assert "... and 15 more (--json lists them all)" in text
    assert lines[first["Differences:"]] == "Differences: 1 regressions, 1 fixes, 40 other changes."


def test_diff_command_two_clean_runs_no_change_and_json(tmp_path):
    from click.testing import CliRunner

    from conformance.cli import main

    old, new = sample_report(), _volatile_changes(sample_report())
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    result = CliRunner().invoke(main, ["diff", str(tmp_path / "old.json"), str(tmp_path / "new.json")])
    assert result.exit_code == 0 and "No change" in result.output
    scenario(new, "acceptance.base")["verdict"] = "FAIL"
    (tmp_path / "new.json").write_text(json.dumps(new))
    result = CliRunner().invoke(main, ["diff", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert [(i["id"], i["old"], i["new"]) for i in data["regressions"]] == [("acceptance.base", "PASS", "FAIL")]


@pytest.mark.parametrize("old, new, expected", [
    ("PASS", "FAIL", "regressions"), ("PASS", "WARN", "regressions"), ("XFAIL", "XPASS", "regressions"),
    ("SKIP", "FAIL", "regressions"), ("PASS", "XFAIL", "regressions"), ("WARN", "ERROR", "regressions"),
    ("FAIL", "PASS", "fixes"), ("ERROR", "PASS", "fixes"), ("WARN", "PASS", "fixes"), ("XPASS", "XFAIL", "fixes"),
    ("FAIL", "ERROR", "changed"), ("FAIL", "SKIP", "changed"), ("PASS", "SKIP", "changed"),
    ("PASS", "BLOCKED", "changed"), ("BLOCKED", "PASS", "changed"), ("BLOCKED", "FAIL", "regressions"),
    ("PASS", "INFO", "changed"), ("REVIEW", "PASS", "changed"), ("PASS", "PASS", None),
])
def test_diff_classification(old, new, expected):
    assert classify(old, new) == expected


# ---- a real browser -------------------------------------------------------------------------------


def _chromium() -> str:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup-chromium (as root) to install Debian's chromium")
    return str(CHROMIUM)


def _run_chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"
    return result


def test_report_html_renders_in_headless_chromium(tmp_path):
    report = sample_report()
    out = tmp_path / "reports" / "run"
    page = write_reports(report, out)["html"]
    for s in report["scenarios"]:  # the evidence the links point at, as a real run leaves it
        for rel in s["evidence"]:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(b"Subject: sample\r\n\r\nsample\r\n")

    dom = _run_chromium(tmp_path / "profile-dom", "--dump-dom", page.resolve().as_uri()).stdout
    doc = lxml_html.fromstring(dom)
    for what in ("scenarios", "requirements", "findings"):
        for verdict in VERDICTS:
            cell = doc.get_element_by_id(f"summary-{what}-{verdict}")
            assert cell.text_content().strip() == str(report["summary"][what][verdict]), (what, verdict)
    assert doc.get_element_by_id("summary-scenarios-FAIL").text_content() == "1"
    assert doc.get_element_by_id("summary-findings-PASS").text_content() == "6"
    for s in report["scenarios"]:
        section = doc.get_element_by_id(f"scenario-{s['id']}")
        assert section.get("data-verdict") == s["verdict"]
    assert doc.get_element_by_id("exit-code").text_content() == "1"
    assert doc.get_element_by_id("filter").get("hidden") is None  # the inline script ran without error
    for href in doc.xpath("//*[local-name()='a']/@href"):
        if not href.startswith("#"):  # evidence and docs/ links resolve relative to report.html
            assert (out / href.split("#")[0]).is_file(), href

    shot = tmp_path / "reports" / "report.png"
    _run_chromium(tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,1000",
                  page.resolve().as_uri())
    assert shot.is_file()
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
    print(f"screenshot of report.html: {shot}")
    shutil.rmtree(tmp_path / "profile-dom", ignore_errors=True)
    shutil.rmtree(tmp_path / "profile-shot", ignore_errors=True)


# ---- evidence -------------------------------------------------------------------------------------


def test_evidence_stores_large_bodies_once_compressed_and_small_ones_as_they_are(tmp_path):
    import gzip
    import os

    from conformance.engine.evidence import LARGE_BODY, EvidenceStore

    store = EvidenceStore(tmp_path)
    small = store.write("acceptance.single", "out", "submission", b"Subject: x\r\n\r\nbody\r\n")
    assert small == "evidence/acceptance.single/001-out-submission.eml"
    assert (tmp_path / small).read_bytes() == b"Subject: x\r\n\r\nbody\r\n"
    big = b"Subject: big\r\n\r\n" + b"QUFB" * (LARGE_BODY // 2)
    first = store.write("acceptance.oversize", "out", "submission", big)
    again = store.write("formal.beyond", "out", "submission", big)
    assert first.endswith("001-out-submission.eml.gz") and again.endswith("001-out-submission.eml.gz")
    assert gzip.decompress((tmp_path / first).read_bytes()) == big
    blobs = list((tmp_path / "evidence" / "blobs").iterdir())
    assert len(blobs) == 1 and blobs[0].stat().st_size < len(big) // 50
    assert os.path.samefile(tmp_path / first, blobs[0]) and os.path.samefile(tmp_path / again, blobs[0])


def _run_sized_report(failing: int = 0) -> dict:
    """A report the size of the default run: 63 scenarios of about 100 findings each (35 checks, 8 notes),
    all 229 requirements, a few events and evidence files per scenario; ``failing`` scenarios FAIL one
    requirement."""
    from conformance.catalogue import load_catalogue

    catalogue = list(load_catalogue())
    template = scenario(sample_report(), "delivery.completa")
    scenarios = []
    for n in range(63):
        sid = f"family{n % 9}.scenario-number-{n:02d}"
        reqs = [r.id for r in catalogue[(n * 3) % 170:(n * 3) % 170 + 58]]
        findings = []
        for k in range(92):
            rid = reqs[k % len(reqs)]
            findings.append({**template["findings"][0], "check": f"check.family{k % 35:02d}", "requirements": [rid],
                             "message": f"{rid} holds: Date Wed, 02 Dec 2026 07:11:{k % 60:02d} +0100 as expected",
                             "evidence": f"evidence/{sid}/00{k % 4}-in-message.eml"})
        for k in range(8):  # notes: a few distinct ones, said several times
            findings.append({**template["findings"][4], "requirements": [reqs[k % 3]],
                             "message": f"observed: header {k % 3} inherited unchanged at 07:11:{k:02d}",
                             "expected": "a value", "actual": f"another value {k}"})
        verdicts = {rid: "PASS" for rid in reqs}
        verdict = "PASS"
        if n < failing:
            verdict = verdicts[reqs[0]] = findings[0]["verdict"] = "FAIL"
            findings[0].update(expected="1", actual="0")
        scenarios.append({**template, "id": sid, "verdict": verdict, "requirements": verdicts, "findings": findings,
                          "error": None, "expected": None, "reason": None,
                          "events": [{**e, "evidence": f"evidence/{sid}/00{i}-in-message.eml"}
                                     for i, e in enumerate(template["events"][:4])],
                          "evidence": [f"evidence/{sid}/00{i}-in-message.eml" for i in range(4)]
                          + [f"evidence/{sid}/004-smtp-submission.txt"]})
    requirements = []
    for r in catalogue:
        judged = [s for s in scenarios if r.id in s["requirements"]]
        verdict = "REVIEW" if r.audit_only else worst(s["requirements"][r.id] for s in judged) if judged else "SKIP"
        requirements.append({"id": r.id, "level": r.level, "statement": r.statement, "audit_only": r.audit_only,
                             "long_timer": r.long_timer, "verdict": verdict, "scenarios": [s["id"] for s in judged],
                             "checks": []})
    report = sample_report(scenarios=scenarios, requirements=requirements)
    assert validate_report(report) == []
    return report


_PROBE = """<script>
document.body.setAttribute("data-height", document.documentElement.scrollHeight);
document.querySelectorAll("details").forEach(function (d) { d.open = false; });
document.body.setAttribute("data-height-collapsed", document.documentElement.scrollHeight);
var first = document.querySelector("#attention table.triage tbody tr:last-child, #nothing-needs-attention");
document.body.setAttribute("data-attention-bottom", Math.round(first.getBoundingClientRect().bottom));
</script></body>"""


def _measure(tmp_path: Path, page: str) -> dict[str, int]:
    """Heights in headless Chromium at 1400 px: as opened, with every <details> closed, and where the list of
    requirements needing attention ends (a test-only script appended to a copy of the page)."""
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _PROBE), encoding="utf-8")
    dom = _run_chromium(tmp_path / "profile-probe", "--window-size=1400,1000", "--dump-dom",
                        probe.resolve().as_uri()).stdout
    body = lxml_html.fromstring(dom).xpath("//body")[0]
    return {key: int(body.get(f"data-{key}")) for key in ("height", "height-collapsed", "attention-bottom")}


def test_a_run_sized_page_stays_under_1_mb_and_20000_px_collapsed(tmp_path):
    page = to_html(_run_sized_report(), "../../docs/")
    size = len(page.encode("utf-8"))
    assert size < 1_000_000, size
    heights = _measure(tmp_path, page)
    print(f"run-sized report.html: {size} bytes, {heights}")
    assert heights["height-collapsed"] < 20_000, heights


def test_a_failing_run_shows_its_failing_requirements_on_the_first_screen(tmp_path):
    page = to_html(_run_sized_report(failing=12), "../../docs/")
    assert len(page.encode("utf-8")) < 1_000_000
    heights = _measure(tmp_path, page)
    assert heights["attention-bottom"] < 1000, heights  # the whole list fits a 1400 x 1000 window
    doc = lxml_html.fromstring(page)
    assert len(doc.xpath("//table[contains(@class,'triage')]/tbody/tr")) == 12
