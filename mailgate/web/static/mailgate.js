// Small enhancements of the server-rendered pages; every form also works
// without this script.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Ask before destructive buttons.
  document.querySelectorAll("[data-confirm]").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });

  // Quick actions: submit the row's form as soon as its select changes.
  document.querySelectorAll("form.auto-submit select").forEach((select) => {
    select.addEventListener("change", () => select.form.requestSubmit());
  });

  // "Check all" on the dashboard.
  const checkAll = document.getElementById("check-all");
  if (checkAll) {
    checkAll.addEventListener("change", () => {
      document.querySelectorAll('input[name="ticket"][form="bulk"]').forEach((box) => {
        box.checked = checkAll.checked;
      });
    });
  }

  // Bulk form: show only the value field of the chosen action.
  const action = document.getElementById("bulk-action");
  if (action) {
    const update = () => {
      document.querySelectorAll("#bulk [data-for]").forEach((field) => {
        field.classList.toggle("shown", field.dataset.for === action.value);
      });
    };
    action.addEventListener("change", update);
    update();
  }
});

// Routing rules editor: drag a rule to a new place, and add condition rows.
document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("rules");
  if (list) {
    let dragged = null;
    list.querySelectorAll("li.rule").forEach((item) => {
      item.addEventListener("dragstart", (event) => {
        dragged = item;
        item.classList.add("dragging");
        event.dataTransfer.effectAllowed = "move";
        event.dataTransfer.setData("text/plain", item.dataset.ruleId);
      });
      item.addEventListener("dragend", () => item.classList.remove("dragging"));
      item.addEventListener("dragover", (event) => {
        if (!dragged || dragged === item) return;
        event.preventDefault();
        const box = item.getBoundingClientRect();
        const after = event.clientY > box.top + box.height / 2;
        list.insertBefore(dragged, after ? item.nextSibling : item);
      });
      item.addEventListener("drop", (event) => event.preventDefault());
    });
    list.addEventListener("drop", async () => {
      if (!dragged) return;
      const moved = dragged;
      dragged = null;
      const rows = Array.from(list.querySelectorAll("li.rule"));
      const position = rows.indexOf(moved) + 1;
      if (String(position) === moved.dataset.position) return;
      const body = new FormData();
      body.append("position", String(position));
      const response = await fetch(moved.dataset.moveUrl, {
        method: "POST",
        headers: { "X-CSRF-Token": list.dataset.csrf, Accept: "application/json" },
        body,
      });
      // Reload either way, so the page shows the order that is stored.
      if (!response.ok) {
        const failure = await response.json().catch(() => ({}));
        window.alert(`The rule was not moved: ${failure.detail || response.status}`);
      }
      window.location.reload();
    });
  }

  // Offer only the operators that the typed condition field accepts.
  const rows = document.getElementById("condition-rows");
  // On page load a rejected operator stays selected, so its error stays true.
  const narrowOperators = (row, reselect) => {
    const operatorsByField = JSON.parse(rows.dataset.operators || "{}");
    const field = row.querySelector("input[list]").value.trim();
    const key = field.toLowerCase().startsWith("header:") ? "header:" : field;
    const allowed = operatorsByField[key];
    row.querySelectorAll("select option").forEach((option) => {
      option.disabled = Boolean(allowed) && !allowed.includes(option.value);
    });
    const select = row.querySelector("select");
    if (reselect && select.selectedOptions[0] && select.selectedOptions[0].disabled) {
      select.value = allowed[0];
    }
  };
  if (rows) {
    rows.addEventListener("input", (event) => {
      if (event.target.matches("input[list]")) narrowOperators(event.target.closest(".condition-row"), true);
    });
    rows.querySelectorAll(".condition-row").forEach((row) => narrowOperators(row, false));
  }

  const addCondition = document.getElementById("add-condition");
  if (addCondition && rows) {
    addCondition.hidden = false;
    addCondition.addEventListener("click", () => {
      const last = rows.lastElementChild;
      const next = Number(last.dataset.row) + 1;
      const row = last.cloneNode(true);
      row.dataset.row = String(next);
      row.querySelectorAll(".field-error").forEach((error) => error.remove());
      row.querySelectorAll("input, select").forEach((input) => {
        input.name = input.name.replace(/^conditions\[\d+\]/, `conditions[${next}]`);
        input.classList.remove("invalid");
        input.removeAttribute("aria-invalid");
        input.removeAttribute("aria-describedby");
        if (input.type === "checkbox") input.checked = false;
        else if (input.tagName === "SELECT") input.selectedIndex = 0;
        else input.value = "";
      });
      rows.appendChild(row);
      narrowOperators(row, false);
      row.querySelector("input").focus();
    });
  }
});
