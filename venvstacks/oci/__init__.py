"""OCI registries as a store for published layers: references, transport, the distribution API.

`reference` parses `oci://HOST[:PORT]/REPO[:TAG]`; `auth` finds credentials and answers
`WWW-Authenticate` challenges; `transport` sends HTTP(S) requests with retries; `client` is the
distribution API (blobs, uploads, mounts, manifests); `artifacts` builds the manifests venvstacks
pushes; `stack` pushes a publish output folder and fetches what a deployment lacks.
"""
