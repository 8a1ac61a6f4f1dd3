"""daticert.xml content: FMT-07..17, FMT-23, FMT-24, TIM-05, NOT-01..05, MUL-08, ACC-14, CON-20."""

from __future__ import annotations

import re
from datetime import timedelta

from ..pec import daticert as dc
from ..pec.constants import (
    CODE_MAILBOX_FULL,
    CODE_TIMEOUT_24H,
    CODE_UNKNOWN_MAILBOX,
    CONSEGNA_KINDS,
    CONSEGNA_VARIANT,
    DATICERT_TIPO_OF,
    DESTINATARIO_CERTIFICATO,
    DESTINATARIO_ESTERNO,
    ERRORE_ALTRO,
    ERRORE_NESSUNO,
    ERRORE_NO_DEST,
    ERRORE_NO_DOMINIO,
    ERRORE_VALUES,
    ERRORE_VIRUS,
    TIPI_RICEVUTA,
    TIPO_SINTETICA,
    Kind,
)
from ..pec.parse import ParsedMessage
from .findings import ValidationContext, check, failed, info, passed, warned

_ERROR_STRING = re.compile(r"^(\d\.\d{1,3}\.\d{1,3}) - (.+?) - (.+)$", re.DOTALL)

# Expected errore per kind (FMT-09, D6): value -> verdict.
_ERRORE_RULES: dict[Kind, dict[str, str]] = {
    Kind.ACCETTAZIONE: {ERRORE_NESSUNO: "PASS"},
    Kind.BUSTA_TRASPORTO: {ERRORE_NESSUNO: "PASS"},
    Kind.PRESA_IN_CARICO: {ERRORE_NESSUNO: "PASS"},
    Kind.CONSEGNA_COMPLETA: {ERRORE_NESSUNO: "PASS"},
    Kind.CONSEGNA_BREVE: {ERRORE_NESSUNO: "PASS"},
    Kind.CONSEGNA_SINTETICA: {ERRORE_NESSUNO: "PASS"},
    Kind.NON_ACCETTAZIONE: {ERRORE_ALTRO: "PASS", ERRORE_NO_DEST: "WARN", ERRORE_NO_DOMINIO: "WARN"},
    Kind.NON_ACCETTAZIONE_VIRUS: {ERRORE_VIRUS: "PASS"},
    Kind.MANCATA_CONSEGNA: {ERRORE_NO_DEST: "PASS", ERRORE_NO_DOMINIO: "PASS", ERRORE_ALTRO: "PASS"},
    Kind.MANCATA_CONSEGNA_VIRUS: {ERRORE_VIRUS: "PASS"},
    Kind.RILEVAZIONE_VIRUS: {ERRORE_VIRUS: "PASS", ERRORE_ALTRO: "WARN", ERRORE_NESSUNO: "WARN"},
    Kind.PREAVVISO_12H: dict.fromkeys(ERRORE_VALUES, "PASS"),
    Kind.MANCATA_CONSEGNA_24H: dict.fromkeys(ERRORE_VALUES, "PASS"),
}


def _has(msg: ParsedMessage) -> bool:
    return msg.daticert is not None and msg.kind not in (Kind.ORDINARY, Kind.UNKNOWN, Kind.BUSTA_ANOMALIA)


@check("daticert.readable", ["FMT-07", "FMT-23"])
def check_readable(msg: ParsedMessage, ctx: ValidationContext):
    """daticert.xml is well-formed XML read without DTD loading or entity expansion."""
    if msg.daticert_node is None and msg.daticert is None:
        return
    problems = [p for p in msg.problems if p.what == "daticert"]
    if problems:
        yield failed("FMT-07", "daticert.xml cannot be read", actual=problems[0].message)
        return
    d = msg.daticert
    if d is not None and d.declares_entities:
        # The certification-data structure declares no entity: declarations are hostile or broken input.
        yield failed(("FMT-07", "FMT-23"), "daticert declares entities in a DOCTYPE (not expanded, not fetched)",
                     expected="no entity declarations", actual="<!ENTITY ...>")
    elif d is not None and d.has_doctype:
        # What the suite does with it (FMT-23) is a self-test of the suite, not a verdict on the target.
        yield info("FMT-23", "daticert carries a DOCTYPE; it was neither loaded nor fetched")


@check("daticert.schema", ["FMT-07"])
def check_schema(msg: ParsedMessage, ctx: ValidationContext):
    """daticert.xml is valid against the project's XSD (element order, cardinalities, enumerations)."""
    if msg.daticert_tree is None:
        return
    errors = dc.schema_errors(msg.daticert_tree)
    if errors:
        yield failed("FMT-07", "daticert.xml breaks the schema", expected="valid against schemas/daticert.xsd",
                     actual="; ".join(errors[:3]))
    else:
        yield passed("FMT-07", "daticert.xml valid against the schema")


@check("daticert.tipo", ["FMT-08", "ENV-13"])
def check_tipo(msg: ParsedMessage, ctx: ValidationContext):
    """postacert/@tipo matches the message kind."""
    if not _has(msg):
        return
    expected = DATICERT_TIPO_OF.get(msg.kind)
    req = ("FMT-08", "ENV-13") if msg.kind is Kind.BUSTA_TRASPORTO else ("FMT-08",)
    if msg.daticert.tipo != expected:
        yield failed(req, "daticert tipo does not match the message", expected=expected, actual=msg.daticert.tipo)
    else:
        yield passed(req, f"tipo={expected}")


@check("daticert.errore", ["FMT-09", "CON-20", "NOT-02", "NOT-05"])
def check_errore(msg: ParsedMessage, ctx: ValidationContext):
    """postacert/@errore fits the kind (DTD comments and decision D6)."""
    if not _has(msg):
        return
    d = msg.daticert
    rules = _ERRORE_RULES.get(msg.kind, {})
    req = ("CON-20",) if msg.kind is Kind.MANCATA_CONSEGNA else ("FMT-09",)
    if msg.kind is Kind.MANCATA_CONSEGNA_VIRUS:
        # NOT-05 (a SHOULD) asks for errore="virus" in the virus non-delivery; the DTD's MUST is FMT-09.
        if d.errore == ERRORE_VIRUS:
            yield passed("NOT-05", "virus non-delivery with errore=virus", decision="D6")
        else:
            yield warned("NOT-05", "virus non-delivery without errore=virus", expected=ERRORE_VIRUS,
                         actual=d.errore, decision="D6")
    if d.errore not in ERRORE_VALUES:
        yield failed(req, "errore value outside the DTD", expected=" | ".join(ERRORE_VALUES), actual=d.errore,
                     decision="D6")
        return
    verdict = rules.get(d.errore, "FAIL")
    expected = " | ".join(v for v, r in rules.items() if r == "PASS")
    if verdict == "FAIL":
        yield failed(req, f"errore={d.errore} does not fit {msg.kind}", expected=expected, actual=d.errore,
                     decision="D6")
    elif verdict == "WARN":
        yield warned(req, f"errore={d.errore} is unexpected for {msg.kind}", expected=expected, actual=d.errore,
                     decision="D6")
    else:
        yield passed(req, f"errore={d.errore}" + (" (absent: DTD default)" if d.errore_defaulted else ""),
                     decision="D6")
    code = _code(d.errore_esteso)
    if msg.kind is Kind.MANCATA_CONSEGNA and code == CODE_UNKNOWN_MAILBOX and d.errore == ERRORE_ALTRO:
        yield warned("NOT-02", "generic errore=altro for an unknown mailbox (reason only in errore-esteso)",
                     expected=ERRORE_NO_DEST, actual=ERRORE_ALTRO, decision="D6")


def _code(value: str | None) -> str | None:
    m = _ERROR_STRING.match((value or "").strip())
    return m.group(1) if m else None


@check("daticert.errore-esteso", ["FMT-17", "NOT-01", "NOT-03", "NOT-04", "NOT-05"])
def check_errore_esteso(msg: ParsedMessage, ctx: ValidationContext):
    """An error carries a short description; non-delivery ones in the `<x.y.z> - <gestore> - <text>` form."""
    if not _has(msg):
        return
    d = msg.daticert
    if d.errore != ERRORE_NESSUNO and not d.errore_esteso:
        yield failed("FMT-17", "an error is reported without errore-esteso", expected="short description",
                     actual="missing")
        return
    if d.errore != ERRORE_NESSUNO:
        yield passed("FMT-17", "errore-esteso describes the error")
    coded = (Kind.MANCATA_CONSEGNA, Kind.MANCATA_CONSEGNA_VIRUS, Kind.PREAVVISO_12H, Kind.MANCATA_CONSEGNA_24H)
    if msg.kind not in coded:
        return
    m = _ERROR_STRING.match((d.errore_esteso or "").strip())
    req = "NOT-05" if msg.kind is Kind.MANCATA_CONSEGNA_VIRUS else "NOT-01"
    if m is None:
        yield warned(req, "errore-esteso is not '<x.y.z> - <gestore> - <descrizione>'",
                     expected="5.1.1 - <gestore> - <descrizione>", actual=d.errore_esteso or "missing",
                     decision="D18")
        return
    yield passed(req, f"errore-esteso code {m.group(1)}", decision="D18")
    if d.gestore_emittente and m.group(2).strip().lower() != d.gestore_emittente.strip().lower():
        yield info(req, "the provider named in errore-esteso differs from gestore-emittente",
                   expected=d.gestore_emittente, actual=m.group(2))
    if msg.kind is Kind.MANCATA_CONSEGNA_24H and m.group(1) != CODE_TIMEOUT_24H:
        yield warned("NOT-04", "24 h notice without the 5.4.1 code", expected=CODE_TIMEOUT_24H, actual=m.group(1),
                     decision="D18")
    if msg.kind is Kind.PREAVVISO_12H and m.group(1) == CODE_TIMEOUT_24H:
        yield warned("NOT-04", "12 h notice uses the 24 h code 5.4.1", actual=m.group(1), decision="D18")
    if msg.kind is Kind.MANCATA_CONSEGNA and m.group(1) == CODE_MAILBOX_FULL:
        yield passed("NOT-03", "mailbox-full code 5.2.2")


@check("daticert.data", ["FMT-11", "TIM-05", "TIM-03"])
def check_data(msg: ParsedMessage, ctx: ValidationContext):
    """data/@zona is +hhmm and matches Italian legal time at that instant; giorno/ora are well formed."""
    if not _has(msg):
        return
    d = msg.daticert
    instant = d.instant
    if instant is None:
        yield failed("FMT-11", "giorno/ora/zona malformed", expected="dd/mm/yyyy, hh:mm:ss, +hhmm",
                     actual=f"{d.giorno} {d.ora} zona={d.zona}", decision="D10")
        return
    expected_zona, _, _ = dc.data_fields(instant)
    if expected_zona != d.zona:
        yield failed(("TIM-05", "TIM-03"), "zona is not Italian legal time at that instant",
                     expected=expected_zona, actual=d.zona, decision="D10")
    else:
        yield passed(("FMT-11", "TIM-05", "TIM-03"), f"{d.giorno} {d.ora} ({d.zona}): Italian legal time",
                     decision="D10")


@check("daticert.identifiers", ["FMT-12", "FMT-13", "FMT-24"])
def check_identifiers(msg: ParsedMessage, ctx: ValidationContext):
    """identificativo without angle brackets; msgid with them; the identifier of the transaction."""
    if not _has(msg):
        return
    d = msg.daticert
    if not d.identificativo:
        yield failed("FMT-12", "identificativo empty")
    elif d.identificativo.startswith("<") or d.identificativo.endswith(">"):
        yield failed("FMT-24", "identificativo carries angle brackets", expected=d.identificativo.strip("<>"),
                     actual=d.identificativo)
    else:
        yield passed("FMT-24", "identificativo without angle brackets")
    if ctx.identificativo and d.identificativo.strip("<>") != ctx.identificativo.strip("<>"):
        yield failed("FMT-12", "identificativo is not the transaction's envelope identifier",
                     expected=ctx.identificativo, actual=d.identificativo)
    if d.msgid is not None:
        if not (d.msgid.startswith("<") and d.msgid.endswith(">")):
            yield failed(("FMT-13", "FMT-24"), "msgid is not the client Message-ID with its angle brackets",
                         expected="<...>", actual=d.msgid)
        else:
            yield passed("FMT-13", "msgid with angle brackets")


@check("daticert.destinatari", ["MUL-08", "FMT-10", "ACC-14", "GEN-02"])
def check_destinatari(msg: ParsedMessage, ctx: ValidationContext):
    """destinatari list the recipients, each certificato or esterno as the providers index says."""
    if not _has(msg):
        return
    d = msg.daticert
    if not d.destinatari or any("@" not in r.address for r in d.destinatari):
        yield failed("MUL-08", "destinatari missing or not addresses",
                     actual=", ".join(r.address for r in d.destinatari) or "none")
        return
    bad = [r for r in d.destinatari if r.tipo not in (DESTINATARIO_CERTIFICATO, DESTINATARIO_ESTERNO)]
    if bad:
        yield failed("FMT-10", "destinatari/@tipo outside certificato | esterno", actual=bad[0].tipo)
        return
    if any(r.tipo_defaulted for r in d.destinatari):
        yield info("FMT-10", "destinatari without tipo read as certificato (DTD default)")
    if msg.kind is Kind.BUSTA_TRASPORTO and msg.headers is not None:  # a daticert on its own has no envelope
        headers = set(msg.addresses("to", "cc"))
        listed = {r.address.lower() for r in d.destinatari}
        if headers != listed:
            yield failed(("MUL-08", "GEN-02"), "destinatari differ from the envelope's To and Cc",
                         expected=", ".join(sorted(headers)), actual=", ".join(sorted(listed)))
        else:
            yield passed(("MUL-08", "GEN-02"), "destinatari are the To and Cc recipients")
    if ctx.index is None:
        return
    wrong = []
    for r in d.destinatari:
        pec = ctx.index.is_pec_domain(r.address.rpartition("@")[2])
        want = DESTINATARIO_CERTIFICATO if pec else DESTINATARIO_ESTERNO
        if r.tipo != want:
            wrong.append(f"{r.address}: {r.tipo} (index says {want})")
    req = ("ACC-14", "FMT-10") if msg.kind is Kind.ACCETTAZIONE else ("FMT-10",)
    if wrong:
        yield failed(req, "recipient classification disagrees with the providers index", actual="; ".join(wrong))
    else:
        yield passed(req, "recipient classification matches the providers index")


@check("daticert.risposte", ["FMT-07"])
def check_risposte(msg: ParsedMessage, ctx: ValidationContext):
    """risposte names the Reply-To of the original, or its sender (decision D7)."""
    if not _has(msg) or msg.daticert_tree is None:
        return
    head = msg.daticert_tree.find("intestazione")
    if head is None or head.find("risposte") is None:
        return  # the schema check reports it
    d = msg.daticert
    if not d.risposte:
        yield warned("FMT-07", "risposte is empty", expected=d.mittente, actual="", decision="D7")
    elif "@" not in d.risposte:
        yield failed("FMT-07", "risposte is not an address", actual=d.risposte, decision="D7")


@check("daticert.ricevuta", ["FMT-14", "ENV-13"])
def check_ricevuta(msg: ParsedMessage, ctx: ValidationContext):
    """ricevuta/@tipo in envelopes and delivery receipts, consistent with the receipt variant."""
    if not _has(msg):
        return
    d = msg.daticert
    if msg.kind is Kind.BUSTA_TRASPORTO:
        if d.ricevuta not in TIPI_RICEVUTA:
            yield failed(("FMT-14", "ENV-13"), "envelope daticert lacks a valid ricevuta type",
                         expected=" | ".join(TIPI_RICEVUTA), actual=d.ricevuta or "missing")
        else:
            yield passed(("FMT-14", "ENV-13"), f"ricevuta tipo={d.ricevuta}")
        return
    variant = CONSEGNA_VARIANT.get(msg.kind)
    if variant is None:
        if d.ricevuta is not None:
            yield warned("FMT-14", f"{msg.kind} daticert carries a ricevuta element", actual=d.ricevuta)
        return
    if d.ricevuta not in TIPI_RICEVUTA:
        yield failed("FMT-14", "delivery receipt lacks a valid ricevuta type", actual=d.ricevuta or "missing")
    elif variant == TIPO_SINTETICA:
        note = "" if d.ricevuta == TIPO_SINTETICA else f" (the type the sender asked for: {d.ricevuta})"
        # Whether the recipient was a Cc one (CON-09) is not in the message: the scenarios judge that.
        yield passed("FMT-14", f"concise receipt, ricevuta tipo={d.ricevuta}{note}", decision="D5")
    elif d.ricevuta != variant:
        yield failed("FMT-14", "ricevuta type disagrees with the receipt's content", expected=variant,
                     actual=d.ricevuta, decision="D5")
    else:
        yield passed("FMT-14", f"ricevuta tipo={d.ricevuta}")


@check("daticert.consegna", ["FMT-15", "MUL-08", "CON-06"])
def check_consegna(msg: ParsedMessage, ctx: ValidationContext):
    """consegna names the one recipient of delivery, non-delivery, virus and timeout notices."""
    if not _has(msg):
        return
    d = msg.daticert
    if msg.kind not in CONSEGNA_KINDS:
        if d.consegna is not None:
            yield warned("FMT-15", f"{msg.kind} carries a consegna element", actual=d.consegna)
        return
    if not d.consegna:
        yield failed("FMT-15", f"{msg.kind} without consegna", expected="the recipient", actual="missing")
        return
    listed = {r.address.lower() for r in d.destinatari}
    if d.consegna.lower() not in listed:
        yield failed("MUL-08", "consegna is not one of destinatari", expected=" | ".join(sorted(listed)),
                     actual=d.consegna)
    else:
        yield passed(("FMT-15", "MUL-08"), f"consegna={d.consegna}")


@check("daticert.ricezione", ["FMT-16", "MUL-03"])
def check_ricezione(msg: ParsedMessage, ctx: ValidationContext):
    """presa in carico lists in ricezione the recipients it covers, all among destinatari."""
    if not _has(msg):
        return
    d = msg.daticert
    if msg.kind is not Kind.PRESA_IN_CARICO:
        if d.ricezione:
            yield warned("FMT-16", f"{msg.kind} carries ricezione elements", actual=", ".join(d.ricezione))
        return
    if not d.ricezione:
        yield failed("FMT-16", "presa in carico without ricezione", expected="one or more recipients",
                     actual="none")
        return
    listed = {r.address.lower() for r in d.destinatari}
    stray = [r for r in d.ricezione if r.lower() not in listed]
    if stray:
        yield failed("MUL-03", "ricezione names recipients outside destinatari", actual=", ".join(stray))
    else:
        yield passed(("FMT-16", "MUL-03"), f"ricezione covers {len(d.ricezione)} recipient(s)")


def instant_of(msg: ParsedMessage):
    return msg.daticert.instant if msg.daticert is not None else None


TOLERANCE = timedelta(seconds=1)
