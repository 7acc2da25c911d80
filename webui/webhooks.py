"""Webhook pages of an organization (its administrators only): the hooks, each hook's recent
deliveries with their status, create (the secret is shown once), delete and redeliver."""

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required

from appliance import permissions
from appliance.errors import Conflict, Invalid
from appliance.ops import outbox, webhooks
from appliance.routes.keyauth import runtime
from webui import bp, forms, once
from webui.auth import actor
from webui.views import visible_org


@bp.get("/orgs/<org_name>/webhooks")
@login_required
def webhook_list(org_name):
    return _webhooks_page(visible_org(org_name, permissions.ADMIN))


def _webhooks_page(org, **form):
    return render_template("webui/webhooks.html", org=org, hooks=webhooks.list_for(org),
                           event_types=outbox.EVENT_TYPES, **form)


@bp.post("/orgs/<org_name>/webhooks")
@login_required
def webhook_create(org_name):
    org = visible_org(org_name, permissions.ADMIN)
    try:
        hook, secret = webhooks.create(runtime(), org, request.form.get("url"), actor=actor())
    except (Invalid, Conflict) as exc:  # a URL refused, one already in the list, too many hooks
        return _webhooks_page(org, form_errors=forms.field_errors(exc, "url"), form_typed=request.form), exc.status
    once.put("webhook", hook.id, secret)  # shown by the page redirected to, once (post/redirect/get)
    return redirect(url_for("webui.webhook_created", org_name=org.name, hook_id=hook.id), code=303)


@bp.get("/orgs/<org_name>/webhooks/<int:hook_id>/created")
@login_required
def webhook_created(org_name, hook_id):
    org = visible_org(org_name, permissions.ADMIN)
    hook = webhooks.get(org, hook_id)
    secret, _about = once.take("webhook", hook.id)
    response = render_template("webui/webhook_created.html", org=org, hook=hook, secret=secret)
    return response, 200, {"Cache-Control": "no-store"}


@bp.get("/orgs/<org_name>/webhooks/<int:hook_id>")
@login_required
def webhook_show(org_name, hook_id):
    org = visible_org(org_name, permissions.ADMIN)
    hook = webhooks.get(org, hook_id)
    return render_template("webui/webhook.html", org=org, hook=hook, deliveries=webhooks.recent_deliveries(hook))


@bp.post("/orgs/<org_name>/webhooks/<int:hook_id>/delete")
@login_required
def webhook_delete(org_name, hook_id):
    org = visible_org(org_name, permissions.ADMIN)
    hook = webhooks.get(org, hook_id)
    webhooks.delete(hook, actor=actor())
    flash(f"Webhook {hook.url} deleted; its pending deliveries will not be sent.", "info")
    return redirect(url_for("webui.webhook_list", org_name=org.name))


@bp.post("/orgs/<org_name>/webhooks/<int:hook_id>/deliveries/<int:delivery_id>/redeliver")
@login_required
def webhook_redeliver(org_name, hook_id, delivery_id):
    org = visible_org(org_name, permissions.ADMIN)
    hook = webhooks.get(org, hook_id)
    delivery = webhooks.redeliver(hook, delivery_id, actor=actor())
    flash(f"Event {delivery.event.event_id} queued for delivery again.", "info")
    return redirect(url_for("webui.webhook_show", org_name=org.name, hook_id=hook.id))
