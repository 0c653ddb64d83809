"""A local stand-in for Meta's WhatsApp Cloud API (Graph API subset). See ../SIMULATOR_SPEC.md."""
from .simulator import GraphSimulator

__all__ = ["GraphSimulator"]
