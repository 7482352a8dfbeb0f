"""The Docker provider: the only code that calls the Docker SDK.

provider       the one interface over where clusters live: EngineProvider (this machine's
               engine) and HostsProvider (several machines' engines); sorctl.api's Cluster
lifecycle      up / scale / down on one engine: plan, compare, apply, undo on failure
multihost      up / status / scale / logs / solve / down across hosts (host plans walked
               with one client per engine), the host list kept beside the secret
apply          creating and removing a cluster's containers and networks, waiting until
               the scheduler counts the nodes
observe        reading clusters back (labels, the scheduler's table, logs)
solve_container  a solve's client container: the system in, progress and the result out
connect        reaching engines (the local one, `--host` endpoints over ssh/TLS)
firewall       a host's packet filter rules, made with the host's own iptables
images, ship   building the role images (buildlog: what a build prints), and sending them
               to other engines
registry       images through a registry (push, pull on each host, a base to build on)
doctor         `sorctl doctor`'s checks that need an engine
hosts, fanout  one thing on many hosts or containers at once
"""
