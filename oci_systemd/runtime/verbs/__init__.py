# SPDX-License-Identifier: Apache-2.0
"""One module per verb (or per closely related verbs), each a function of the `Runtime`
(oci_systemd.runtime.lifecycle) it is called on: create (and create_steps, what one create
does in order), start, state, kill, delete, run, exec, update (update, pause, resume) and
inspect (list, ps, stats, events). A verb checks the container's status with
`Status.can_<verb>()` and talks to systemd only through the container's placement."""
