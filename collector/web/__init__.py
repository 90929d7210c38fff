"""The local technician web page, served by the collector on its own bounded server.

Off unless ``[web] listen`` is set. collector/web/http.py parses requests
(sans-IO), collector/web/server.py holds the connections and their limits,
collector/web/app.py the pages, collector/web/auth.py the login
(docs/security.md: every bound and what a client gets past it).
"""
