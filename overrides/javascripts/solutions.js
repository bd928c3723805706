// Exercise notebooks: fold each solution cell (tagged "solution") into a collapsed
// "Solution" box, so a reader can try the exercise before seeing the answer.
document$.subscribe(() => {
  document.querySelectorAll(".jp-Cell.celltag_solution").forEach((cell) => {
    if (cell.parentElement.tagName === "DETAILS") return;
    const box = document.createElement("details");
    box.className = "success";
    const summary = document.createElement("summary");
    summary.textContent = "Solution";
    box.appendChild(summary);
    cell.replaceWith(box);
    box.appendChild(cell);
  });
});
