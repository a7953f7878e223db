"""Checking API answers against the OpenAPI document (openapi.py), for every test module that calls the API."""

import jsonschema

import openapi


def matches_spec(response, path, method="get"):
    """Assert that `response`'s status is documented for the operation `method` on `path` (as the document
    spells it, e.g. "/credentials/{row_id}") and that its JSON fits that answer's schema; return `response`.

    Raises KeyError for an undocumented status and jsonschema.ValidationError for a body that does not fit.
    """
    document = openapi.document()
    documented = document["paths"][path][method.lower()]["responses"][str(response.status_code)]
    content = documented.get("content")
    if content:
        schema = {**content["application/json"]["schema"], "components": document["components"]}
        jsonschema.validate(response.get_json(), schema)
    return response
