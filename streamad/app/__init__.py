"""The applications, above the core and the connectors: the command line (``cli``), file
replay with its summary (``replay``), the embedded demo (``demo``) and the Kafka worker
(``kafka``, what ``streamad run`` runs). The core (``streamad.*``) never imports from here,
and neither do the connectors."""
