"""The local technician web page, served by the collector on its own bounded server.

Off unless ``[web] listen`` is set. collector/web/http.py parses requests
(sans-IO), collector/web/server.py holds the connections and their limits,
collector/web/app.py the routes, collector/web/page.py what every page is
made of, collector/web/login.py and collector/web/auth.py the login,
collector/web/config_editor.py the config editor
(docs/security.md: every bound and what a client gets past it).

Beside the tools room, at its rank. May import: every other room (the
control socket's queries in collector/tools, the config files of
collector/remote), collector/'s shared modules (logs, retry, parts), every
layer below collector/. Must not import: the builders (daemon, assembly, cli).
"""
