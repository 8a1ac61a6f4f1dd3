"""Italian wire values of PEC, in one place (RFC 6109 Appendix A, the decree, deployed practice).

Header names are listed in their canonical spelling; they are compared case-insensitively (HDR-01,
decision D4). Values are compared exactly.
"""

from __future__ import annotations

from enum import StrEnum
from zoneinfo import ZoneInfo

ROME = ZoneInfo("Europe/Rome")

# Header names.
H_TRASPORTO = "X-Trasporto"
H_RICEVUTA = "X-Ricevuta"
H_RIFERIMENTO = "X-Riferimento-Message-ID"
H_TIPO_RICEVUTA = "X-TipoRicevuta"
H_VERIFICA_SICUREZZA = "X-VerificaSicurezza"
H_MITTENTE = "X-Mittente"
PEC_HEADERS = (H_TRASPORTO, H_RICEVUTA, H_RIFERIMENTO, H_TIPO_RICEVUTA, H_VERIFICA_SICUREZZA, H_MITTENTE)

# X-Trasporto values.
TRASPORTO_POSTA_CERTIFICATA = "posta-certificata"
TRASPORTO_ERRORE = "errore"
TRASPORTO_VALUES = (TRASPORTO_POSTA_CERTIFICATA, TRASPORTO_ERRORE)

# X-Ricevuta values.
RICEVUTA_ACCETTAZIONE = "accettazione"
RICEVUTA_NON_ACCETTAZIONE = "non-accettazione"
RICEVUTA_PRESA_IN_CARICO = "presa-in-carico"
RICEVUTA_AVVENUTA_CONSEGNA = "avvenuta-consegna"
RICEVUTA_ERRORE_CONSEGNA = "errore-consegna"
RICEVUTA_PREAVVISO = "preavviso-errore-consegna"
RICEVUTA_RILEVAZIONE_VIRUS = "rilevazione-virus"
RICEVUTA_VALUES = (
    RICEVUTA_NON_ACCETTAZIONE,
    RICEVUTA_ACCETTAZIONE,
    RICEVUTA_PREAVVISO,
    RICEVUTA_PRESA_IN_CARICO,
    RICEVUTA_RILEVAZIONE_VIRUS,
    RICEVUTA_ERRORE_CONSEGNA,
    RICEVUTA_AVVENUTA_CONSEGNA,
)

VERIFICA_SICUREZZA_ERRORE = "errore"

# Receipt variants (X-TipoRicevuta and daticert ricevuta/@tipo).
TIPO_COMPLETA = "completa"
TIPO_BREVE = "breve"
TIPO_SINTETICA = "sintetica"
TIPI_RICEVUTA = (TIPO_COMPLETA, TIPO_BREVE, TIPO_SINTETICA)

# daticert postacert/@tipo values (8) and @errore values (5).
DATICERT_TIPI = (
    "accettazione",
    "non-accettazione",
    "presa-in-carico",
    "avvenuta-consegna",
    "posta-certificata",
    "errore-consegna",
    "preavviso-errore-consegna",
    "rilevazione-virus",
)
ERRORE_NESSUNO = "nessuno"
ERRORE_NO_DEST = "no-dest"
ERRORE_NO_DOMINIO = "no-dominio"
ERRORE_VIRUS = "virus"
ERRORE_ALTRO = "altro"
ERRORE_VALUES = (ERRORE_NESSUNO, ERRORE_NO_DEST, ERRORE_NO_DOMINIO, ERRORE_VIRUS, ERRORE_ALTRO)
DESTINATARIO_CERTIFICATO = "certificato"
DESTINATARIO_ESTERNO = "esterno"

# Attachment names.
DATICERT_NAME = "daticert.xml"
DATICERT_RFC_NAME = "certdata.xml"  # RFC English rendering, accepted with WARN (D1)
POSTACERT_NAME = "postacert.eml"
SMIME_NAME = "smime.p7s"
HASH_SUFFIX = ".hash"

# Service address local part and From display-name prefixes (D2).
SERVICE_LOCAL_PART = "posta-certificata"
PER_CONTO_DI = "Per conto di: "
ON_BEHALF_OF = "On behalf of: "

TEXT_CHARSET = "iso-8859-1"


class Kind(StrEnum):
    """The 14 message kinds a provider emits, plus what a parser may meet besides them."""

    ACCETTAZIONE = "accettazione"
    NON_ACCETTAZIONE = "non-accettazione"
    NON_ACCETTAZIONE_VIRUS = "non-accettazione-virus"
    BUSTA_TRASPORTO = "busta-trasporto"
    PRESA_IN_CARICO = "presa-in-carico"
    BUSTA_ANOMALIA = "busta-anomalia"
    RILEVAZIONE_VIRUS = "rilevazione-virus"
    MANCATA_CONSEGNA_VIRUS = "mancata-consegna-virus"
    CONSEGNA_COMPLETA = "consegna-completa"
    CONSEGNA_BREVE = "consegna-breve"
    CONSEGNA_SINTETICA = "consegna-sintetica"
    MANCATA_CONSEGNA = "mancata-consegna"
    PREAVVISO_12H = "preavviso-12h"
    MANCATA_CONSEGNA_24H = "mancata-consegna-24h"
    # Not emitted by a provider as such, but met by a parser:
    ORDINARY = "ordinary"  # no PEC header at all
    UNKNOWN = "unknown"  # a PEC header with a value outside the catalogue


PEC_KINDS = tuple(k for k in Kind if k not in (Kind.ORDINARY, Kind.UNKNOWN))

# Subject prefixes (FMT-18), exactly as on the wire: upper case, then ": " and the original subject.
SUBJECT_PREFIX: dict[Kind, str] = {
    Kind.ACCETTAZIONE: "ACCETTAZIONE: ",
    Kind.NON_ACCETTAZIONE: "AVVISO DI NON ACCETTAZIONE: ",
    Kind.NON_ACCETTAZIONE_VIRUS: "AVVISO DI NON ACCETTAZIONE PER VIRUS: ",
    Kind.BUSTA_TRASPORTO: "POSTA CERTIFICATA: ",
    Kind.PRESA_IN_CARICO: "PRESA IN CARICO: ",
    Kind.BUSTA_ANOMALIA: "ANOMALIA MESSAGGIO: ",
    Kind.RILEVAZIONE_VIRUS: "PROBLEMA DI SICUREZZA: ",
    Kind.MANCATA_CONSEGNA_VIRUS: "AVVISO DI MANCATA CONSEGNA PER VIRUS: ",
    Kind.CONSEGNA_COMPLETA: "CONSEGNA: ",
    Kind.CONSEGNA_BREVE: "CONSEGNA: ",
    Kind.CONSEGNA_SINTETICA: "CONSEGNA: ",
    Kind.MANCATA_CONSEGNA: "AVVISO DI MANCATA CONSEGNA: ",
    Kind.PREAVVISO_12H: "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: ",
    Kind.MANCATA_CONSEGNA_24H: "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: ",
}

# X-Ricevuta / X-Trasporto value of each kind (the identifying header, GEN-04).
RICEVUTA_OF: dict[Kind, str] = {
    Kind.ACCETTAZIONE: RICEVUTA_ACCETTAZIONE,
    Kind.NON_ACCETTAZIONE: RICEVUTA_NON_ACCETTAZIONE,
    Kind.NON_ACCETTAZIONE_VIRUS: RICEVUTA_NON_ACCETTAZIONE,
    Kind.PRESA_IN_CARICO: RICEVUTA_PRESA_IN_CARICO,
    Kind.RILEVAZIONE_VIRUS: RICEVUTA_RILEVAZIONE_VIRUS,
    Kind.MANCATA_CONSEGNA_VIRUS: RICEVUTA_ERRORE_CONSEGNA,
    Kind.CONSEGNA_COMPLETA: RICEVUTA_AVVENUTA_CONSEGNA,
    Kind.CONSEGNA_BREVE: RICEVUTA_AVVENUTA_CONSEGNA,
    Kind.CONSEGNA_SINTETICA: RICEVUTA_AVVENUTA_CONSEGNA,
    Kind.MANCATA_CONSEGNA: RICEVUTA_ERRORE_CONSEGNA,
    Kind.PREAVVISO_12H: RICEVUTA_PREAVVISO,
    Kind.MANCATA_CONSEGNA_24H: RICEVUTA_PREAVVISO,
}
TRASPORTO_OF: dict[Kind, str] = {
    Kind.BUSTA_TRASPORTO: TRASPORTO_POSTA_CERTIFICATA,
    Kind.BUSTA_ANOMALIA: TRASPORTO_ERRORE,
}

# daticert postacert/@tipo per kind (none for the anomaly envelope).
DATICERT_TIPO_OF: dict[Kind, str] = {
    Kind.ACCETTAZIONE: "accettazione",
    Kind.NON_ACCETTAZIONE: "non-accettazione",
    Kind.NON_ACCETTAZIONE_VIRUS: "non-accettazione",
    Kind.BUSTA_TRASPORTO: "posta-certificata",
    Kind.PRESA_IN_CARICO: "presa-in-carico",
    Kind.RILEVAZIONE_VIRUS: "rilevazione-virus",
    Kind.MANCATA_CONSEGNA_VIRUS: "errore-consegna",
    Kind.CONSEGNA_COMPLETA: "avvenuta-consegna",
    Kind.CONSEGNA_BREVE: "avvenuta-consegna",
    Kind.CONSEGNA_SINTETICA: "avvenuta-consegna",
    Kind.MANCATA_CONSEGNA: "errore-consegna",
    Kind.PREAVVISO_12H: "preavviso-errore-consegna",
    Kind.MANCATA_CONSEGNA_24H: "preavviso-errore-consegna",
}

# Kinds addressed to the sending provider's mailReceipt rather than to a user (GEN-01 exceptions).
TO_PROVIDER_KINDS = frozenset({Kind.PRESA_IN_CARICO, Kind.RILEVAZIONE_VIRUS})
# Kinds that carry the virus flag X-VerificaSicurezza: errore (VIR-03, VIR-10).
VIRUS_FLAG_KINDS = frozenset({Kind.NON_ACCETTAZIONE_VIRUS, Kind.MANCATA_CONSEGNA_VIRUS})
# Kinds that must include the original as postacert.eml / must not include it (section 2.12).
ORIGINAL_REQUIRED = frozenset({Kind.BUSTA_TRASPORTO, Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.BUSTA_ANOMALIA})
ORIGINAL_FORBIDDEN = frozenset(
    {
        Kind.NON_ACCETTAZIONE,
        Kind.NON_ACCETTAZIONE_VIRUS,
        Kind.RILEVAZIONE_VIRUS,
        Kind.CONSEGNA_SINTETICA,
        Kind.PREAVVISO_12H,
        Kind.MANCATA_CONSEGNA_24H,
    }
)
# Kinds whose daticert names one recipient in <consegna> (FMT-15).
CONSEGNA_KINDS = frozenset(
    {
        Kind.CONSEGNA_COMPLETA,
        Kind.CONSEGNA_BREVE,
        Kind.CONSEGNA_SINTETICA,
        Kind.MANCATA_CONSEGNA,
        Kind.MANCATA_CONSEGNA_VIRUS,
        Kind.RILEVAZIONE_VIRUS,
        Kind.PREAVVISO_12H,
        Kind.MANCATA_CONSEGNA_24H,
    }
)
CONSEGNA_VARIANT = {
    Kind.CONSEGNA_COMPLETA: TIPO_COMPLETA,
    Kind.CONSEGNA_BREVE: TIPO_BREVE,
    Kind.CONSEGNA_SINTETICA: TIPO_SINTETICA,
}

# Human-readable headings (Italian, deployed phrasing; wording is INFO only, D19).
HEADING: dict[Kind, str] = {
    Kind.ACCETTAZIONE: "Ricevuta di accettazione",
    Kind.NON_ACCETTAZIONE: "Avviso di non accettazione",
    Kind.NON_ACCETTAZIONE_VIRUS: "Avviso di non accettazione per virus",
    Kind.BUSTA_TRASPORTO: "Messaggio di posta certificata",
    Kind.PRESA_IN_CARICO: "Ricevuta di presa in carico",
    Kind.BUSTA_ANOMALIA: "Anomalia nel messaggio",
    Kind.RILEVAZIONE_VIRUS: "Rilevazione virus",
    Kind.MANCATA_CONSEGNA_VIRUS: "Avviso di mancata consegna per virus",
    Kind.CONSEGNA_COMPLETA: "Ricevuta di avvenuta consegna",
    Kind.CONSEGNA_BREVE: "Ricevuta breve di avvenuta consegna",
    Kind.CONSEGNA_SINTETICA: "Ricevuta sintetica di avvenuta consegna",
    Kind.MANCATA_CONSEGNA: "Avviso di mancata consegna",
    Kind.PREAVVISO_12H: "Avviso di mancata consegna per superamento tempo massimo (12 ore)",
    Kind.MANCATA_CONSEGNA_24H: "Avviso di mancata consegna per superamento tempo massimo (24 ore)",
}

# Labels of recipients in the acceptance text (ACC-14).
LABEL_CERTIFICATA = "posta certificata"
LABEL_ORDINARIA = "posta ordinaria"

# Extended error codes in errore-esteso (D18, NOT-01..05).
CODE_UNKNOWN_MAILBOX = "5.1.1"
CODE_MAILBOX_FULL = "5.2.2"
CODE_TIMEOUT_24H = "5.4.1"
CODE_TIMEOUT_12H = "4.4.7"
CODE_VIRUS = "5.5.1"  # as quoted from real Aruba virus non-delivery notices

# Limits of the validator (issue: 64 MiB messages, 64 KiB header lines, 32 MIME levels).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_HEADER_LINE = 64 * 1024
MAX_MIME_DEPTH = 32
MAX_DATICERT_BYTES = 1024 * 1024
