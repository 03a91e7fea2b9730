"""Stage 3: raw → accepted + quarantine + flags per country and form, and fieldwork quality."""
