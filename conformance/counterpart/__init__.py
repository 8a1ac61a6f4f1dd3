"""The counterpart: a simulated PEC provider (and an ordinary mail domain) the suite plays against a
target provider. Layer 3: it builds on the sans-I/O PEC core (`conformance.pec`) and never imports the
reference provider, the scenarios or the engine."""

from .peer import BEHAVIOURS, Behaviour, Counterpart, Received, Sent, SmtpOutcome
from .sink import OrdinaryDomain

__all__ = ["BEHAVIOURS", "Behaviour", "Counterpart", "OrdinaryDomain", "Received", "Sent", "SmtpOutcome"]
