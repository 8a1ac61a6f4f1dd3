"""Reference PEC provider: an honest gestore on loopback, with a fault switch per deviation."""
