"""The platform's web pages and the static files they need, all served by the platform itself."""
