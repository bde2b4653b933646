"""Business hours in the console: a supervisor edits a group's week (open days, every
opening and closing interval of a day), time zone and holidays in a form, stored through the
business-hours API; intervals stored through the API show in the form and survive a save."""

from __future__ import annotations

from browser_env import ConsoleEnv, wait_until
from playwright.sync_api import expect

PATH = "/organizations/o1/user-groups/g1/business-hours"



def test_supervisor_edits_business_hours_in_a_form(console: ConsoleEnv) -> None:
    page = console.open_console("sue", scope="supervisor")
    page.get_by_role("button", name="Manage").click()
    manage = page.get_by_role("region", name="Manage")
    form = manage.locator("#hours-form")

    form.get_by_role("textbox", name="User group").fill("g1")
    form.get_by_role("button", name="Load").click()
    expect(manage.get_by_role("status")).to_have_text(
        "This group has no business hours yet: it is always open.")
    # a new group is offered Monday to Friday, 09:00-17:00
    expect(form.get_by_role("checkbox", name="Open on Friday")).to_be_checked()
    expect(form.get_by_role("checkbox", name="Open on Saturday")).not_to_be_checked()
    expect(form.get_by_label("Saturday opens")).to_be_disabled()

    form.get_by_role("combobox", name="Time zone").fill("Europe/Athens")
    form.get_by_label("Monday opens").fill("08:30")
    form.get_by_label("Monday closes").fill("16:00")
    form.get_by_role("checkbox", name="Open on Friday").uncheck()
    form.get_by_role("checkbox", name="Open on Saturday").check()
    form.get_by_label("Saturday opens").fill("10:00")
    form.get_by_label("Saturday closes").fill("14:00")
    form.get_by_role("textbox", name="Holidays (YYYY-MM-DD, comma-separated)").fill(
        "2026-12-25, 2027-01-01")
    form.get_by_role("button", name="Save").click()
    expect(manage.get_by_role("status")).to_have_text("Saved.")

    hours = wait_until(lambda: console.http.get(PATH, headers=console.bearer(
        "sue", "supervisor")).json())
    assert hours["timezone"] == "Europe/Athens"
    assert hours["enabled"] is True
    assert hours["holidays"] == ["2026-12-25", "2027-01-01"]
    weekly = {day: spans for day, spans in hours["weekly"].items() if spans}
    assert weekly == {"mon": [["08:30", "16:00"]], "tue": [["09:00", "17:00"]],
                      "wed": [["09:00", "17:00"]], "thu": [["09:00", "17:00"]],
                      "sat": [["10:00", "14:00"]]}

    # A second Tuesday interval set through the API shows and is kept when the form saves.
    console.supervisor_send("PATCH", PATH, {"weekly": {
        "tue": [["09:00", "12:00"], ["13:00", "17:00"]]}})
    form.get_by_role("button", name="Load").click()
    expect(form.get_by_label("Tuesday closes", exact=True)).to_have_value("12:00")
    expect(form.get_by_label("Tuesday opens (2)")).to_have_value("13:00")
    expect(form.get_by_label("Tuesday closes (2)")).to_have_value("17:00")
    expect(form.get_by_role("combobox", name="Time zone")).to_have_value("Europe/Athens")
    form.get_by_role("checkbox", name="Open on Wednesday").uncheck()
    form.get_by_role("checkbox", name="Business hours apply").uncheck()
    form.get_by_role("button", name="Save").click()
    wait_until(lambda: console.supervisor_get(PATH)["enabled"] is False)
    hours = console.supervisor_get(PATH)
    assert hours["weekly"]["tue"] == [["09:00", "12:00"], ["13:00", "17:00"]]
    assert not hours["weekly"].get("wed")

    # Intervals are added and removed in the form: a split Monday, Tuesday back to one.
    form.get_by_role("button", name="Add hours on Monday").click()
    expect(form.get_by_label("Monday opens (2)")).to_be_focused()
    form.get_by_label("Monday closes", exact=True).fill("12:00")
    form.get_by_label("Monday opens (2)").fill("13:00")
    form.get_by_label("Monday closes (2)").fill("18:00")
    form.get_by_role("button", name="Remove Tuesday hours (2)").click()
    expect(form.get_by_label("Tuesday opens (2)")).to_have_count(0)
    # a closed day's controls are disabled, "Add hours" included
    expect(form.get_by_role("button", name="Add hours on Sunday")).to_be_disabled()
    form.get_by_role("button", name="Save").click()
    wait_until(lambda: console.supervisor_get(PATH)["weekly"]["mon"] == [
        ["08:30", "12:00"], ["13:00", "18:00"]])
    hours = console.supervisor_get(PATH)
    assert hours["weekly"]["tue"] == [["09:00", "12:00"]]
