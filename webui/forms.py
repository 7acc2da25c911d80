"""Form parsing: request.form into plain values, or appliance.errors.Invalid."""

from appliance.errors import Invalid

# When a rotated key's old secret stops working; the first is the default, so deployed clients
# keep working for a day while they are switched to the new secret.
GRACE_CHOICES = ((86400, "in 24 hours"), (3600, "in 1 hour"), (604800, "in 7 days"), (0, "immediately"))

ORG_KEY_PERMISSIONS = {
    "repository": ("repository", None),
    "docs": ("docs", None),
    "api_read": ("api", "read"),
    "api_write": ("api", "write"),
}


def permissions(form, org_name):
    """Checkbox names of the organization key form -> [[domain, resource]]."""
    chosen = []
    for field, (domain, resource) in ORG_KEY_PERMISSIONS.items():
        if form.get(field):
            chosen.append([domain, org_name if domain in ("repository", "docs") else resource])
    if not chosen:
        raise Invalid("Validation error(s)", {"permissions": "choose at least one permission"})
    return chosen


def user_permissions(form):
    chosen = []
    api = form.get("api")
    if api in ("read", "write"):
        chosen.append(["api", api])
    for org_name in form.getlist("repository"):
        chosen.append(["repository", org_name])
    if form.get("repositories"):
        chosen.append(["repositories", None])
    if not chosen:
        raise Invalid("Validation error(s)", {"permissions": "choose at least one permission"})
    return chosen


def choice(form, field, allowed, parse=str):
    try:
        value = parse(form.get(field, allowed[0]))
    except (TypeError, ValueError):
        value = None
    if value not in allowed:
        raise Invalid("Validation error(s)", {field: "is not one of the offered choices"})
    return value


# How fields are named in sentences about them.
_LABELS = {"email": "e-mail address", "full_name": "full name", "url": "URL", "confirm": "confirmation",
           "grace_seconds": "grace period"}
_PREDICATES = ("must", "has", "is", "are", "can't", "cannot", "should", "points", "does", "needs")


def sentence(field, text):
    """A service's error about ``field`` as a sentence for the page: "must be at least 8
    characters" -> "The password must be at least 8 characters."."""
    text = str(text).strip().rstrip(".")
    if text.split(" ", 1)[0] in _PREDICATES:
        text = f"The {_LABELS.get(field, field.replace('_', ' '))} {text}"
    return text[:1].upper() + text[1:] + "."


def field_errors(exc, field, rename=None):
    """{field: sentence} for the fields a HexvaultError names, else its message under ``field``.
    ``rename`` maps a service's field name to the form's (the service's "password" is the
    account form's "new_password")."""
    if exc.errors:
        rename = rename or {}
        return {rename.get(name, name): sentence(name, text) for name, text in exc.errors.items()}
    return {field: sentence(field, exc.message)}


def action_error(exc, key):
    """{key: sentences} for a form that is only a button (a row's Remove, Disable, Rotate): every
    error of ``exc`` in one place, next to that button."""
    return {key: " ".join(field_errors(exc, key).values())}


def without_secrets(form, *secret_fields):
    """What was typed, to show again, minus what must never be echoed (passwords, codes)."""
    return {k: v for k, v in form.items() if k not in secret_fields and k != "csrf_token"}
