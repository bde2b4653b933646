"""The console in Greek: chosen from the browser's language, switched back by hand, and
the two catalogs holding the same strings."""

from __future__ import annotations

from browser_env import ConsoleEnv
from playwright.sync_api import expect


def test_greek_labels_from_the_browser_language_and_the_switch(console: ConsoleEnv) -> None:
    page = console.open_console("alice", locale="el-GR")
    expect(page.locator("html")).to_have_attribute("lang", "el")
    expect(page.get_by_role("status")).to_have_text("Συνδεδεμένος")
    console.create_request("u-gr", "Γιώργος")
    queue = page.get_by_role("region", name="Ουρά")
    item = queue.get_by_role("listitem").filter(has_text="Γιώργος")
    expect(item).to_contain_text("αναμονή")
    item.get_by_role("button", name="Αποδοχή").click()
    expect(page.get_by_role("region", name="Συνομιλίες").get_by_role(
        "button", name="Γιώργος")).to_be_visible()
    conversation = page.get_by_role("region", name="Συνομιλία", exact=True)
    for role, name in (("textbox", "Μήνυμα"), ("button", "Αποστολή"),
                       ("button", "Επισύναψη αρχείου"), ("button", "Μεταφορά"),
                       ("button", "Τέλος συνομιλίας"), ("checkbox", "Εσωτερική σημείωση")):
        expect(conversation.get_by_role(role, name=name)).to_be_visible()  # type: ignore[arg-type]
    expect(conversation.get_by_role("log", name="Μηνύματα")).to_be_attached()
    expect(page.get_by_role("region", name="Πελάτης")).to_be_visible()
    status = page.get_by_role("combobox", name="Κατάσταση")
    expect(status.locator("option:checked")).to_have_text("Διαθέσιμος")

    page.get_by_role("combobox", name="Γλώσσα").select_option("en")
    expect(page.get_by_role("region", name="Queue")).to_be_visible()
    expect(page.get_by_role("button", name="End conversation")).to_be_visible()
    page.reload()
    expect(page.get_by_role("status")).to_have_text("Connected")


def test_both_catalogs_hold_every_string_the_page_names(console: ConsoleEnv) -> None:
    page = console.open_console("alice")
    keys = page.evaluate("""async () => {
      const en = (await import("/console/strings.en.js")).default;
      const el = (await import("/console/strings.el.js")).default;
      const named = [...document.querySelectorAll("[data-i18n]")].map((e) => e.dataset.i18n);
      return { en: Object.keys(en).sort(), el: Object.keys(el).sort(), named,
        empty: [...Object.entries(en), ...Object.entries(el)]
          .filter(([, v]) => typeof v !== "string" || !v).map(([k]) => k) };
    }""")
    assert keys["en"] == keys["el"]
    assert keys["empty"] == []
    assert sorted(set(keys["named"]) - set(keys["en"])) == []
