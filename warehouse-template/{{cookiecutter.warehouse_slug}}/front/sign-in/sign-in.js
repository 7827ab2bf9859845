// Says why the sign-in page is shown: a refused password (the form's own address answered
// 401 with this page), an idle session, or a sign-out.
const messages = {
  refused: "Wrong user name or password, or no access to Prefect.",
  idle: "You were signed out after a while without activity.",
  "signed-out": "You are signed out.",
};
const reason = location.pathname.endsWith("/submit") ? "refused" : location.search.slice(1);
const message = document.getElementById("message");
if (messages[reason]) {
  message.textContent = messages[reason];
  message.className = reason;
  message.hidden = false;
}
