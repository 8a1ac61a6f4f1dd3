"""daticert.xml: the certification data of every PEC message (RFC 6109 section 4.4).

Parsing never loads a DTD, never resolves entities and never touches the network, whatever the
document declares (FMT-23): real files carry no DOCTYPE, some carry a PUBLIC one naming a remote
URL, and an attacker can declare entity bombs. The two attribute defaults of the DTD are applied in
code (FMT-09, FMT-10).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

from lxml import etree

from ..schemafiles import schema_path
from .constants import (
    DESTINATARIO_CERTIFICATO,
    ERRORE_NESSUNO,
    MAX_DATICERT_BYTES,
    ROME,
)


class DatiCertError(ValueError):
    """The bytes are not a readable daticert document."""


@dataclass(frozen=True)
class Recipient:
    address: str
    tipo: str = DESTINATARIO_CERTIFICATO
    tipo_defaulted: bool = False


@dataclass
class DatiCert:
    tipo: str
    mittente: str
    destinatari: list[Recipient]
    risposte: str
    gestore_emittente: str
    zona: str
    giorno: str
    ora: str
    identificativo: str
    oggetto: str | None = None
    msgid: str | None = None
    ricevuta: str | None = None
    consegna: str | None = None
    ricezione: list[str] = field(default_factory=list)
    errore: str = ERRORE_NESSUNO
    errore_esteso: str | None = None
    # Set by the parser only.
    errore_defaulted: bool = False
    has_doctype: bool = False
    declares_entities: bool = False

    @property
    def instant(self) -> datetime | None:
        """The event instant as an aware datetime, or None when a field is malformed."""
        return parse_local_time(self.giorno, self.ora, self.zona)


_ZONA = re.compile(r"^([+-])(\d{2})(\d{2})$")
_GIORNO = re.compile(r"^(\d{2})/(\d{2})/(\d{4})$")
_ORA = re.compile(r"^(\d{2}):(\d{2}):(\d{2})$")


def format_zona(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def legal_time(instant: datetime) -> datetime:
    """Italian legal time (Europe/Rome) at that instant (TIM-03)."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(ROME)


def data_fields(instant: datetime) -> tuple[str, str, str]:
    """(zona, giorno, ora) of the daticert <data> element for an instant."""
    local = legal_time(instant)
    offset = local.utcoffset() or timedelta(0)
    return format_zona(offset), local.strftime("%d/%m/%Y"), local.strftime("%H:%M:%S")


def parse_local_time(giorno: str, ora: str, zona: str) -> datetime | None:
    mz, mg, mo = _ZONA.match(zona or ""), _GIORNO.match(giorno or ""), _ORA.match(ora or "")
    if not (mz and mg and mo):
        return None
    sign = 1 if mz.group(1) == "+" else -1
    offset = timedelta(hours=int(mz.group(2)), minutes=int(mz.group(3))) * sign
    try:
        return datetime(
            int(mg.group(3)),
            int(mg.group(2)),
            int(mg.group(1)),
            int(mo.group(1)),
            int(mo.group(2)),
            int(mo.group(3)),
            tzinfo=timezone(offset),
        )
    except ValueError:
        return None


def render(d: DatiCert) -> bytes:
    """Serialise to UTF-8 XML with the element order of the DTD (no DOCTYPE, as deployed)."""
    root = etree.Element("postacert", tipo=d.tipo, errore=d.errore)
    head = etree.SubElement(root, "intestazione")
    etree.SubElement(head, "mittente").text = d.mittente
    for r in d.destinatari:
        etree.SubElement(head, "destinatari", tipo=r.tipo).text = r.address
    etree.SubElement(head, "risposte").text = d.risposte
    if d.oggetto is not None:
        etree.SubElement(head, "oggetto").text = d.oggetto
    dati = etree.SubElement(root, "dati")
    etree.SubElement(dati, "gestore-emittente").text = d.gestore_emittente
    data = etree.SubElement(dati, "data", zona=d.zona)
    etree.SubElement(data, "giorno").text = d.giorno
    etree.SubElement(data, "ora").text = d.ora
    etree.SubElement(dati, "identificativo").text = d.identificativo
    if d.msgid is not None:
        etree.SubElement(dati, "msgid").text = d.msgid
    if d.ricevuta is not None:
        etree.SubElement(dati, "ricevuta", tipo=d.ricevuta)
    if d.consegna is not None:
        etree.SubElement(dati, "consegna").text = d.consegna
    for r in d.ricezione:
        etree.SubElement(dati, "ricezione").text = r
    if d.errore_esteso is not None:
        etree.SubElement(dati, "errore-esteso").text = d.errore_esteso
    etree.indent(root, space="    ")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8") + b"\n"


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


_ENTITY_DECL = re.compile(rb"<!\s*E\x00?N\x00?T\x00?I\x00?T\x00?Y", re.IGNORECASE)
_DOCTYPE = re.compile(rb"<!\x00?D\x00?O\x00?C\x00?T\x00?Y\x00?P\x00?E", re.IGNORECASE)


def parse_tree(data: bytes) -> etree._Element:
    """Parse daticert bytes into an element tree without ever expanding entities or loading a DTD."""
    if len(data) > MAX_DATICERT_BYTES:
        raise DatiCertError(f"daticert is {len(data)} bytes, above the {MAX_DATICERT_BYTES}-byte bound")
    try:
        root = etree.fromstring(data, _safe_parser())
    except etree.XMLSyntaxError as exc:
        raise DatiCertError(f"not well-formed XML: {exc}") from None
    if root is None:
        raise DatiCertError("empty XML document")
    _drop_entity_references(root)
    return root


def _drop_entity_references(root: etree._Element) -> None:
    """Remove unexpanded entity references (kept as nodes since entities are never resolved), keeping
    the text around them: they neither reach a field's value nor confuse the schema validator."""
    for ref in list(root.iter(etree.Entity)):
        parent = ref.getparent()
        if parent is None:
            continue
        tail = ref.tail or ""
        previous = ref.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
        parent.remove(ref)


def _text(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    return "".join(t for t in el.itertext()).strip()


def from_tree(root: etree._Element, raw: bytes = b"") -> DatiCert:
    if root.tag != "postacert":
        raise DatiCertError(f"root element is <{root.tag}>, not <postacert>")
    head = root.find("intestazione")
    dati = root.find("dati")
    if head is None or dati is None:
        raise DatiCertError("missing <intestazione> or <dati>")
    data = dati.find("data")
    destinatari = []
    for el in head.findall("destinatari"):
        tipo = el.get("tipo")
        destinatari.append(
            Recipient(_text(el) or "", tipo if tipo is not None else DESTINATARIO_CERTIFICATO, tipo is None)
        )
    ricevuta = dati.find("ricevuta")
    errore = root.get("errore")
    return DatiCert(
        tipo=root.get("tipo") or "",
        mittente=_text(head.find("mittente")) or "",
        destinatari=destinatari,
        risposte=_text(head.find("risposte")) or "",
        oggetto=_text(head.find("oggetto")),
        gestore_emittente=_text(dati.find("gestore-emittente")) or "",
        zona=(data.get("zona") if data is not None else None) or "",
        giorno=_text(data.find("giorno") if data is not None else None) or "",
        ora=_text(data.find("ora") if data is not None else None) or "",
        identificativo=_text(dati.find("identificativo")) or "",
        msgid=_text(dati.find("msgid")),
        ricevuta=ricevuta.get("tipo") if ricevuta is not None else None,
        consegna=_text(dati.find("consegna")),
        ricezione=[_text(el) or "" for el in dati.findall("ricezione")],
        errore=errore if errore is not None else ERRORE_NESSUNO,
        errore_esteso=_text(dati.find("errore-esteso")),
        errore_defaulted=errore is None,
        has_doctype=bool(_DOCTYPE.search(raw[:4096])),
        declares_entities=bool(_ENTITY_DECL.search(raw[:65536])),
    )


def parse(data: bytes) -> DatiCert:
    """Parse daticert bytes (any encoding the XML declares, BOM included) into a DatiCert."""
    return from_tree(parse_tree(data), data)


@lru_cache(maxsize=1)
def _xsd_bytes() -> bytes:
    return schema_path("daticert.xsd").read_bytes()


_LOCAL = threading.local()


def _schema() -> etree.XMLSchema:
    """One compiled schema per thread: libxml2 schema objects must not be shared between threads."""
    schema = getattr(_LOCAL, "schema", None)
    if schema is None:
        schema = _LOCAL.schema = etree.XMLSchema(etree.fromstring(_xsd_bytes(), _safe_parser()))
    return schema


def schema_errors(root: etree._Element) -> list[str]:
    """Structural errors against our own XSD (never a schema or DTD the document names)."""
    schema = _schema()
    if schema.validate(root):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log][:20]
