"""The local technician web page (issue #9): microdot, served by the collector.

Off unless ``[web] listen`` is set. See collector/web/app.py for the pages and
collector/web/auth.py for the login.
"""
