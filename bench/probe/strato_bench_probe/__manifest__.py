{
    "name": "Strato bench probe",
    "summary": "Benchmark-only baselines for bench/webhook_load.py: minimal public routes that write",
    "version": "18.0.1.0.0",
    "license": "LGPL-3",
    "depends": ["base"],
    "data": ["security/ir.model.access.csv", "data/ir_cron_data.xml"],
    "installable": True,
}
