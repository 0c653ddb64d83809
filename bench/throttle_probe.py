"""Throttle accuracy probe: 800 texts through the real send loop at 80 msg/s, timed at the simulator.

    /opt/odoo18-venv/bin/python /opt/odoo18/odoo-bin shell --addons-path=/opt/odoo18/addons,/opt/odoo18/odoo/addons,. \\
        --db_host=127.0.0.1 --db_user=odoo -d <database with strato_whatsapp> --no-http < bench/throttle_probe.py

Creates its account, leads and conversations, commits (the send loop commits per batch), and removes them
at the end. Quicker than `send_throughput.py throttle` and independent of its prepared databases.
"""
import sys, time
sys.path.insert(0, '/work/main/devtools')
from graph_simulator import GraphSimulator
acc = {"phone_number_id": "106000000000001", "waba_id": "206000000000001", "access_token": "probe-token",
       "app_secret": "probe-secret", "display_phone_number": "+34 600 000 600", "verified_name": "Probe", "app_id": "306000000000001"}
sim = GraphSimulator(port=0, accounts=[acc]).start()
Account = env['strato.whatsapp.account']
account = Account.search([('phone_number_id', '=', acc['phone_number_id'])]) or Account.create({
    'name': 'Throttle probe', 'phone_number_id': acc['phone_number_id'], 'access_token': acc['access_token'],
    'app_secret': acc['app_secret']})
account.write({'graph_api_url': sim.url, 'messages_per_second': 80, 'token_invalid': False})
N = 800
leads = env['crm.lead'].create([{'name': f'T{i}', 'mobile': f'+34 633 {i:06d}'} for i in range(N)])
now = env.cr.now()
env['strato.whatsapp.conversation'].create([{'account_id': account.id, 'wa_id': f'34633{i:06d}', 'lead_id': lead.id,
                                             'last_inbound_at': now} for i, lead in enumerate(leads)])
messages, skipped = env['strato.whatsapp.message']._enqueue_for_leads(leads, body='Hola', account=account)
env.cr.commit()
print('queued', len(messages), 'skipped', len(skipped))
stamps = []
orig = sim._server.controls if hasattr(sim, '_server') else None
t0 = time.perf_counter()
env['strato.whatsapp.message']._cron_send()
wall = time.perf_counter() - t0
sent = env['strato.whatsapp.message'].search_count([('id', 'in', messages.ids), ('state', '=', 'sent')])
print(f'sent {sent} in {wall:.2f}s -> {sent / wall:.2f} msg/s (target 80, within 5%: 76-84)')
accepted = sim.sent()['messages']
times = sorted(float(m['timestamp']) for m in accepted)
if times and times[0]:
    span = times[-1] - times[0]
    print(f'at the simulator: {len(times)} accepted over {span:.2f}s -> {(len(times) - 1) / span:.2f}/s')
    import bisect
    print('max in any 1 s window:', max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)))
else:
    print('simulator record keys:', list(accepted[0].keys()) if accepted else None)
# leave the database as it was
env['strato.whatsapp.message'].search([('id', 'in', messages.ids)]).unlink()
env['strato.whatsapp.conversation'].search([('account_id', '=', account.id)]).unlink()
leads.unlink(); account.unlink(); env.cr.commit()
sim.stop()
