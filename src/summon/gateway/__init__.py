"""On-demand summoning: DNS server, connection holder/splicer, idle reaper, status page."""
