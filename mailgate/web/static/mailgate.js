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
