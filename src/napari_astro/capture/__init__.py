"""INDI capture (pyindi-client): devices, sequences, autofocus (capture issue)."""
