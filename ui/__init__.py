"""The run browser: a local, read-only web app over the store (``autotts-graph ui``).

``source.py`` opens the store (read-only, through the tool server's snapshots, so it works while a run
writes); ``figures.py`` turns a run's view (``graph/run_view.py``) into Plotly figures; ``pages.py`` holds the
routes and ``app.py`` builds the Starlette app. Templates and the page script are package data; Plotly's
JavaScript is the ``plotly`` package's own file. Nothing is fetched from the internet and no build step runs.
"""
