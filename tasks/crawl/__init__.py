"""Crawling: fetch a site politely and archive every response as gzip WARC.

run.py starts a crawl and reads its pages back; dispatcher.py is the event loop and its workers;
frontier.py (URL normalisation, scope, the breadth-first queue), politeness.py (robots.txt, per-host
slots and clocks), sitemap.py, recrawl.py (conditional refresh requests), warc.py (the raw store, and
a reader for any WARC/WET file), http.py (the one place that builds HTTP clients) and local_site.py
(a folder served on 127.0.0.1 for the demo and the tests).

Must not import MLflow, Prefect, the artifact store or a later stage: the corpus stage (tasks/corpus/)
calls run.crawl. From the rest of tasks/ it uses only tasks.clean.charset (charset sniffing),
tasks.clean.extract (HTML decoding) and tasks.pieces (checksums of WARC batches), and may raise
tasks.errors.InputError.
"""
