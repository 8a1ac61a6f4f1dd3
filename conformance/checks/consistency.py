"""Agreement between header fields, the human-readable text and daticert.

FMT-20 (same certification data in text and XML), TIM-02 (one time value per transaction), TIM-04
(readable date and time), TXT-01 (Italian data items), ENV-11, ANO-09, ACC-11, RIC-12, CON-07, VIR-09,
TMO-10, ACC-14 (recipient labels in the acceptance text), ENV-03.
"""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import parsedate_to_datetime

from ..pec import daticert as dc
from ..pec.constants import LABEL_CERTIFICATA, LABEL_ORDINARIA, Kind
from ..pec.parse import ParsedMessage
from .findings import ValidationContext, check, failed, info, passed, warned

# The requirement that lists the text's data items, per kind.
TEXT_REQ = {
    Kind.ACCETTAZIONE: "ACC-13",
    Kind.NON_ACCETTAZIONE: "ACC-11",
    Kind.NON_ACCETTAZIONE_VIRUS: "VIR-03",
    Kind.BUSTA_TRASPORTO: "ENV-11",
    Kind.PRESA_IN_CARICO: "RIC-12",
    Kind.BUSTA_ANOMALIA: "ANO-09",
    Kind.RILEVAZIONE_VIRUS: "VIR-09",
    Kind.MANCATA_CONSEGNA_VIRUS: "VIR-10",
    Kind.CONSEGNA_COMPLETA: "CON-07",
    Kind.CONSEGNA_BREVE: "CON-07",
    Kind.CONSEGNA_SINTETICA: "CON-07",
    Kind.MANCATA_CONSEGNA: "CON-20",
    Kind.PREAVVISO_12H: "TMO-10",
    Kind.MANCATA_CONSEGNA_24H: "TMO-10",
}
_SINGLE = {Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA, Kind.MANCATA_CONSEGNA,
           Kind.RILEVAZIONE_VIRUS, Kind.MANCATA_CONSEGNA_VIRUS, Kind.PREAVVISO_12H, Kind.MANCATA_CONSEGNA_24H}
_ITALIAN_WHEN = re.compile(r"Il giorno \d{2}/\d{2}/\d{4} alle ore \d{2}:\d{2}:\d{2} \([+-]\d{2}:?\d{2}\)")
_ITALIAN_ID = re.compile(r"Identificativo (del )?messaggio:", re.IGNORECASE)


_WRITTEN_INSTANT = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}(?:[ T,]+(?:alle ore |at )?\d{1,2}[:.]\d{2}(?:[:.]\d{2})?)?")


def _instant_written(flat: str) -> str | None:
    """The first date-like run of the text, to show how the instant was written."""
    m = _WRITTEN_INSTANT.search(flat)
    return m.group(0) if m else None


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _zone_forms(zona: str) -> tuple[str, str]:
    return f"({zona})", f"({zona[:3]}:{zona[3:]})"


@check("consistency.text-data", ["FMT-20", "TIM-04", "TXT-01", "FMT-21", "ACC-14", *sorted(set(TEXT_REQ.values()))])
def check_text_data(msg: ParsedMessage, ctx: ValidationContext):
    """The text states the same date, time, zone, subject, sender, recipients and identifier as daticert."""
    kind = msg.kind
    if kind not in TEXT_REQ:
        return
    text = msg.text_plain if msg.text_plain is not None else msg.text_html
    req = ("FMT-20", TEXT_REQ[kind])
    if text is None:
        yield failed(req, "no human-readable text part", decision="D19")
        return
    flat = _flat(text)
    lower = flat.lower()
    missing: list[str] = []
    d = msg.daticert
    if kind is Kind.BUSTA_ANOMALIA:
        # No daticert: the date items come from the Date header, the rest from the carried message.
        try:
            when = parsedate_to_datetime(msg.header("date") or "")
            zona, giorno, ora = dc.data_fields(when)
        except (TypeError, ValueError, IndexError):
            zona = giorno = ora = None
        giorno_seen = bool(giorno and ora and zona)
        if giorno and giorno not in flat:
            missing.append(f"date {giorno}")
        if ora and ora not in flat:
            missing.append(f"time {ora}")
        if zona and not any(z in flat for z in _zone_forms(zona)):
            missing.append(f"zone ({zona})")
        subject = msg.subject.removeprefix("ANOMALIA MESSAGGIO: ")
        if subject and _flat(subject) not in flat:
            missing.append("subject")
    elif d is not None:
        giorno_seen = bool(d.giorno and d.ora and d.zona)
        if d.giorno not in flat:
            missing.append(f"date {d.giorno}")
        if d.ora not in flat:
            missing.append(f"time {d.ora}")
        if d.zona and not any(z in flat for z in _zone_forms(d.zona)):
            missing.append(f"zone ({d.zona})")
        if d.oggetto and _flat(d.oggetto) not in flat:
            missing.append("subject")
        if d.mittente.lower() not in lower and kind is not Kind.MANCATA_CONSEGNA_VIRUS:
            missing.append(f"sender {d.mittente}")
        if kind in _SINGLE:
            if d.consegna and d.consegna.lower() not in lower:
                missing.append(f"recipient {d.consegna}")
        elif kind is Kind.PRESA_IN_CARICO:
            missing += [f"recipient {r}" for r in d.ricezione if r.lower() not in lower]
        else:
            missing += [f"recipient {r.address}" for r in d.destinatari if r.address.lower() not in lower]
        if d.identificativo and d.identificativo not in flat:
            missing.append("identifier")
    else:
        return
    if missing:
        yield failed(req, "the text lacks data items of the certification data", expected="all data items",
                     actual="missing: " + ", ".join(missing), decision="D19")
    else:
        yield passed(req, "the text states every data item of daticert", decision="D19")
    # TIM-04 is the readable form of the instant: the date as dd/mm/yyyy, the time as hh:mm:ss, then the zone.
    unreadable = [m for m in missing if m.startswith(("date ", "time ", "zone "))]
    if unreadable:
        yield failed("TIM-04", "the text does not give the instant as dd/mm/yyyy, hh:mm:ss and (zone)",
                     expected=", ".join(unreadable), actual=_instant_written(flat) or "not found", decision="D19")
    elif giorno_seen:
        yield passed("TIM-04", "the text gives the instant as dd/mm/yyyy, hh:mm:ss and (zone)", decision="D19")
    if not _ITALIAN_WHEN.search(flat) or (kind is not Kind.BUSTA_ANOMALIA and not _ITALIAN_ID.search(flat)):
        # The sentences are free (D19, FMT-21); giving the data items without their Italian labels is what
        # TXT-01 (a SHOULD) asks against.
        yield info("FMT-21", "text wording differs from the Italian phrasing of deployed providers", decision="D19")
        yield warned("TXT-01", "the data items are not given in Italian ('Il giorno ... alle ore ...', "
                               "'Identificativo messaggio:')", decision="D19")
    else:
        # FMT-21 is descriptive (INFO); TXT-01 asks for every data item in the Italian phrasing.
        yield info("FMT-21", "data items in the Italian phrasing ('Il giorno ... alle ore ...')", decision="D19")
        if missing:
            yield warned("TXT-01", "Italian phrasing, but not every data item", actual="missing: " + ", ".join(missing),
                         decision="D19")
        else:
            yield passed("TXT-01", "every data item in the Italian phrasing ('Il giorno ... alle ore ...')",
                         decision="D19")
    if kind is Kind.ACCETTAZIONE and d is not None:
        wrong = []
        for r in d.destinatari:
            label = LABEL_CERTIFICATA if r.tipo == "certificato" else LABEL_ORDINARIA
            if not re.search(re.escape(r.address) + r'\W{0,4}\(?"?' + label, flat, re.IGNORECASE):
                wrong.append(f"{r.address} ({label})")
        if wrong:
            yield failed("ACC-14", "recipient labels in the acceptance text disagree with daticert",
                         expected=", ".join(wrong), actual="labels missing or different")
        else:
            yield passed("ACC-14", "each recipient labelled posta certificata / posta ordinaria")


@check("consistency.date-instant", ["TIM-02", "ENV-03", "TIM-03"], needs_body=False)
def check_date_instant(msg: ParsedMessage, ctx: ValidationContext):
    """The Date header and daticert data are one time value (same second)."""
    d = msg.daticert
    if d is None or d.instant is None or msg.kind in (Kind.ORDINARY, Kind.UNKNOWN):
        return
    header = msg.date()
    if header is None or header.tzinfo is None:
        return
    delta = abs(header - d.instant)
    req = ("TIM-02", "ENV-03") if msg.kind is Kind.BUSTA_TRASPORTO else ("TIM-02",)
    if delta > timedelta(seconds=1):
        yield failed(req, "Date header and daticert data are not the same instant",
                     expected=d.instant.isoformat(), actual=header.isoformat())
    else:
        yield passed(req, "Date and daticert data agree")
    if header.utcoffset() != d.instant.utcoffset():
        yield warned("TIM-03", "Date header zone differs from Italian legal time",
                     expected=d.zona, actual=(msg.header("date") or "")[-5:], decision="D10")
