"""Tests against a real Kubernetes API server (etcd + kube-apiserver started by the session fixture).

The reusable parts are importable: ``plane`` (ControlPlane), ``tools`` (finding the binaries),
``pki`` (certificates) and ``kubeconfig``. The fixtures live in ``conftest.py`` beside this file.
"""
