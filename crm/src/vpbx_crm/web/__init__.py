"""The agent workspace: the web app built from crm/web, served by the CRM at ``/``."""
