"""How a run is reported: figures and report.html, model card, privacy statement, console summary."""
