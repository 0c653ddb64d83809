# Runs inside `odoo-bin shell` (variables `env`, `odoo` given); called by bench/webhook_load.py.
# Prepares a benchmark template database. BENCH_KIND=strato: the WhatsApp account, two salespeople
# and the leads listed in BENCH_LEADS (a JSON file). BENCH_KIND=oca: an OCA mail.gateway record of
# type whatsapp. Ends by storing the marker parameter, so a half-prepared database is never reused.
import json
import os

KIND = os.environ["BENCH_KIND"]
MARKER = os.environ["BENCH_MARKER"]
APP_SECRET = os.environ["BENCH_APP_SECRET"]
PHONE_NUMBER_ID = os.environ["BENCH_PHONE_NUMBER_ID"]
WABA_ID = os.environ["BENCH_WABA_ID"]

# Leads are created as in the UI: the salesperson follows them (and, with Odoo's default notification
# preference, gets an e-mail notification for each chatter post by the webhook).
env = env(context=dict(env.context))  # noqa: F821
company = env.ref("base.main_company")
company.write({"country_id": env.ref("base.es").id, "email": "ventas@bench.example.com"})


def salespeople():
    group = env.ref("sales_team.group_sale_salesman")
    users = env["res.users"]
    for index in (1, 2):
        users |= env["res.users"].create({
            "name": f"Bench Salesperson {index}", "login": f"bench.sales{index}",
            "email": f"bench.sales{index}@bench.example.com", "groups_id": [(6, 0, [group.id])]})
    return users


if KIND == "strato":
    team = env.ref("sales_team.team_sales_department")
    env["strato.whatsapp.account"].create({
        "name": "Bench account", "phone_number_id": PHONE_NUMBER_ID, "business_account_id": WABA_ID,
        "app_secret": APP_SECRET, "access_token": "bench-token", "verify_token": "bench-verify-token",
        # Media-less message types only: the Graph API is never called during the benchmark.
        "graph_api_url": "http://127.0.0.1:9", "team_id": team.id,
    })
    users = salespeople()
    with open(os.environ["BENCH_LEADS"]) as leads_file:
        specs = json.load(leads_file)
    countries = {"ES": env.ref("base.es").id, "AR": env.ref("base.ar").id}
    values = [{
        "name": spec["name"], "contact_name": spec["contact_name"], "type": spec["type"],
        "mobile": spec["mobile"], "country_id": countries[spec["country"]],
        "user_id": users[index % len(users)].id, "team_id": team.id,
    } for index, spec in enumerate(specs)]
    for start in range(0, len(values), 500):
        env["crm.lead"].create(values[start:start + 500])
    env.flush_all()
    env.cr.execute("SELECT count(*) FROM crm_lead WHERE name LIKE 'WA bench lead %%' AND whatsapp_mobile_key IS NOT NULL")
    valid = env.cr.fetchone()[0]
    assert valid == len(specs), f"only {valid} of {len(specs)} bench leads got a WhatsApp number"
elif KIND == "oca":
    users = salespeople()
    env["mail.gateway"].create({
        "name": "Bench WhatsApp", "gateway_type": "whatsapp", "token": "bench-token",
        "webhook_key": "benchkey", "webhook_secret": APP_SECRET, "whatsapp_security_key": "bench-verify-token",
        "whatsapp_from_phone": PHONE_NUMBER_ID, "whatsapp_account_id": WABA_ID,
        "member_ids": [(6, 0, users.ids)],
    }).integrated_webhook_state = "integrated"
else:
    raise SystemExit(f"unknown BENCH_KIND {KIND}")

env["ir.config_parameter"].sudo().set_param("strato_bench.prepared", MARKER)
env.cr.commit()
print("BENCH-PREPARED", KIND)
