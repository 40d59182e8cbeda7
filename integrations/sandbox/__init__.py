"""Local stand-ins for the HubSpot and Salesforce APIs (OAuth, rate limits, faults, CRM writes),
served by stdlib threads for end-to-end tests, benches and `manage.py run_sandbox`."""
