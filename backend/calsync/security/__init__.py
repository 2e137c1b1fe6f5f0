"""Defences that cut across the API: URL checks (SSRF), headers, CSRF, rate limits."""
