"""schemas/daticert.xsd and schemas/daticert.dtd against valid and broken certification data."""

from __future__ import annotations

from pathlib import Path

import pytest
import xmlschema
from lxml import etree

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"

VALID_ENVELOPE = """<?xml version="1.0" encoding="UTF-8"?>
<postacert tipo="posta-certificata" errore="nessuno">
    <intestazione>
        <mittente>mario.rossi@pec.put.test</mittente>
        <destinatari tipo="certificato">anna.bianchi@pec.counterpart.test</destinatari>
        <destinatari tipo="esterno">luca.verdi@external.test</destinatari>
        <risposte>mario.rossi@pec.put.test</risposte>
        <oggetto>Prova di invio</oggetto>
    </intestazione>
    <dati>
        <gestore-emittente>Gestore di prova S.p.A.</gestore-emittente>
        <data zona="+0100">
            <giorno>15/01/2024</giorno>
            <ora>10:20:30</ora>
        </data>
        <identificativo>opec1.20240115102030.12345.1.1@pec.put.test</identificativo>
        <msgid>&lt;abc@client.test&gt;</msgid>
        <ricevuta tipo="completa"/>
    </dati>
</postacert>
"""

# A receipt with the optional attributes left out and an empty risposte, as real files have.
VALID_MINIMAL_RECEIPT = """<?xml version="1.0" encoding="UTF-8"?>
<postacert tipo="accettazione">
  <intestazione>
    <mittente>mario.rossi@pec.put.test</mittente>
    <destinatari>anna.bianchi@pec.counterpart.test</destinatari>
    <risposte></risposte>
  </intestazione>
  <dati>
    <gestore-emittente>Gestore di prova S.p.A.</gestore-emittente>
    <data zona="+0200"><giorno>01/07/2024</giorno><ora>23:59:59</ora></data>
    <identificativo>opec1.1@pec.put.test</identificativo>
  </dati>
</postacert>
"""

VALID_PRESA_IN_CARICO = """<postacert tipo="presa-in-carico" errore="nessuno">
  <intestazione>
    <mittente>mario.rossi@pec.counterpart.test</mittente>
    <destinatari tipo="certificato">a@pec.put.test</destinatari>
    <destinatari tipo="certificato">b@pec.put.test</destinatari>
    <risposte>mario.rossi@pec.counterpart.test</risposte>
    <oggetto>Prova</oggetto>
  </intestazione>
  <dati>
    <gestore-emittente>Gestore di prova S.p.A.</gestore-emittente>
    <data zona="+0100"><giorno>31/12/2024</giorno><ora>00:00:00</ora></data>
    <identificativo>opec1.2@pec.counterpart.test</identificativo>
    <ricezione>a@pec.put.test</ricezione>
    <ricezione>b@pec.put.test</ricezione>
  </dati>
</postacert>
"""

VALID = {
    "envelope": VALID_ENVELOPE,
    "minimal-receipt": VALID_MINIMAL_RECEIPT,
    "presa-in-carico": VALID_PRESA_IN_CARICO,
}

# Each broken variant of the valid envelope, and whether a DTD can see the fault at all
# (a DTD cannot check the zona/giorno/ora formats).
INVALID: dict[str, tuple[str, str, bool]] = {
    "wrong-tipo": ('tipo="posta-certificata"', 'tipo="mancata-consegna"', True),
    "wrong-errore": ('errore="nessuno"', 'errore="superamento-tempi-massimi"', True),
    "wrong-order": (
        '<msgid>&lt;abc@client.test&gt;</msgid>\n        <ricevuta tipo="completa"/>',
        '<ricevuta tipo="completa"/>\n        <msgid>&lt;abc@client.test&gt;</msgid>',
        True,
    ),
    "zona-without-sign": ('zona="+0100"', 'zona="0100"', False),
    "giorno-iso": ("<giorno>15/01/2024</giorno>", "<giorno>2024-01-01</giorno>", False),
    "ora-25h": ("<ora>10:20:30</ora>", "<ora>25:00:00</ora>", False),
    "missing-risposte": ("<risposte>mario.rossi@pec.put.test</risposte>\n", "", True),
    "two-ricevuta": (
        '<ricevuta tipo="completa"/>',
        '<ricevuta tipo="completa"/>\n        <ricevuta tipo="breve"/>',
        True,
    ),
    "ricevuta-without-tipo": ('<ricevuta tipo="completa"/>', "<ricevuta/>", True),
    "missing-zona": ('<data zona="+0100">', "<data>", True),
    "no-destinatari": (
        '<destinatari tipo="certificato">anna.bianchi@pec.counterpart.test</destinatari>\n'
        '        <destinatari tipo="esterno">luca.verdi@external.test</destinatari>\n',
        "",
        True,
    ),
    "unknown-element": (
        '<ricevuta tipo="completa"/>',
        '<ricevuta tipo="completa"/>\n        <extra>x</extra>',
        True,
    ),
}


def broken(name: str) -> str:
    old, new, _ = INVALID[name]
    assert old in VALID_ENVELOPE, name
    return VALID_ENVELOPE.replace(old, new, 1)


@pytest.fixture(scope="module")
def xsd() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMAS / "daticert.xsd"))


@pytest.fixture(scope="module")
def lxml_xsd() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / "daticert.xsd")))


@pytest.fixture(scope="module")
def dtd() -> etree.DTD:
    return etree.DTD(str(SCHEMAS / "daticert.dtd"))


def tree(text: str) -> etree._Element:
    return etree.fromstring(text.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_against_xsd(xsd: xmlschema.XMLSchema, name: str) -> None:
    xsd.validate(VALID[name])


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_against_xsd_with_lxml(lxml_xsd: etree.XMLSchema, name: str) -> None:
    assert lxml_xsd.validate(tree(VALID[name])), lxml_xsd.error_log


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_against_dtd(dtd: etree.DTD, name: str) -> None:
    assert dtd.validate(tree(VALID[name])), dtd.error_log.filter_from_errors()


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_rejected_by_xsd(xsd: xmlschema.XMLSchema, lxml_xsd: etree.XMLSchema, name: str) -> None:
    doc = broken(name)
    assert not xsd.is_valid(doc)
    assert not lxml_xsd.validate(tree(doc))


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_against_dtd(dtd: etree.DTD, name: str) -> None:
    structural = INVALID[name][2]
    assert dtd.validate(tree(broken(name))) is not structural


def test_msgid_keeps_angle_brackets(xsd: xmlschema.XMLSchema) -> None:
    data = xsd.to_dict(VALID_ENVELOPE)
    assert data["dati"]["msgid"] == "<abc@client.test>"


def test_xsd_fills_no_defaults(xsd: xmlschema.XMLSchema) -> None:
    # Defaults (errore="nessuno", destinatari tipo="certificato") are applied in code, so
    # the schema must not invent them.
    data = xsd.to_dict(VALID_MINIMAL_RECEIPT)
    assert "@errore" not in data
    assert data["intestazione"]["destinatari"] == ["anna.bianchi@pec.counterpart.test"]


def test_wrong_root_rejected(xsd: xmlschema.XMLSchema) -> None:
    doc = "<dati><gestore-emittente>x</gestore-emittente></dati>"
    assert not xsd.is_valid(doc)


def test_whitespace_around_values_allowed(xsd: xmlschema.XMLSchema) -> None:
    # Pretty-printers may wrap short values; enumerations and patterns collapse whitespace.
    doc = VALID_ENVELOPE.replace("<giorno>15/01/2024</giorno>", "<giorno>\n  15/01/2024\n</giorno>")
    doc = doc.replace('zona="+0100"', 'zona=" +0100 "')
    assert xsd.is_valid(doc)
