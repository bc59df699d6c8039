"""Everything that touches torch. Never imports textual."""
