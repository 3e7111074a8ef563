//! The agent's HTTPS endpoint (kubelet's port 10250 role) that the API server proxies
//! `kubectl logs` and `kubectl exec` to: `GET /containerLogs/{ns}/{pod}/{container}` and
//! `GET|POST /exec/{ns}/{pod}/{container}` (websocket channel protocols v4/v5). Only callers
//! with the API server's bearer token get in.
