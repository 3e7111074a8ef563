//! The agent's Node: registration (capacity cpu/memory/pods=110, allocatable, podCIDR,
//! addresses, daemonEndpoints.kubeletEndpoint.port, nodeInfo), conditions (Ready,
//! MemoryPressure, DiskPressure, PIDPressure) and the Lease `kube-node-lease/<node>` renewed
//! every 10 s.
