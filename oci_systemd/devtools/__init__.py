# SPDX-License-Identifier: Apache-2.0
"""Developer tools, not part of the runtime: `sandbox` boots a private systemd for tests,
benchmarks and people on a machine whose PID 1 is not systemd."""
