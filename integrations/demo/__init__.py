"""`worker.py demo`: a simulated webinar through the real web app, simulator and report sync."""
