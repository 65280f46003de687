"""Consent: enrolled subjects, Ed25519-signed grants, revocations, a hash-chained ledger, the gate."""
from vfx.consent.gate import ConsentGate, GateConfig, GateDecision, open_gate

__all__ = ["ConsentGate", "GateConfig", "GateDecision", "open_gate"]
