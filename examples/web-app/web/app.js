// The SPA: talks to the JSON API under /api, served by the `api` function.
const list = document.getElementById("items");
const error = document.getElementById("error");

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!response.ok) {
    const text = await response.text();
    let message = text;
    try { message = JSON.parse(text).error; } catch (_) { /* not JSON */ }
    throw new Error(message || response.statusText);
  }
  return response.status === 204 ? null : response.json();
}

function render(items) {
  list.replaceChildren(...items.map((item) => {
    const li = document.createElement("li");
    li.dataset.id = item.id;
    li.textContent = item.note ? `${item.name} — ${item.note}` : item.name;
    const remove = document.createElement("button");
    remove.textContent = "delete";
    remove.onclick = async () => { await api("DELETE", `/api/items/${item.id}`); await refresh(); };
    li.append(" ", remove);
    return li;
  }));
}

async function refresh() {
  try {
    render(await api("GET", "/api/items"));
    error.textContent = "";
  } catch (e) {
    error.textContent = e.message;
  }
}

document.getElementById("add").onsubmit = async (event) => {
  event.preventDefault();
  const name = document.getElementById("name");
  const note = document.getElementById("note");
  try {
    await api("POST", "/api/items", { name: name.value, note: note.value });
    name.value = "";
    note.value = "";
    await refresh();
  } catch (e) {
    error.textContent = e.message;
  }
};

api("POST", "/api/views").then(({ views }) => {
  document.getElementById("views").textContent = `page views: ${views}`;
});
refresh();
