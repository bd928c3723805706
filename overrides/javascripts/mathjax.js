// MathJax 3 for both kinds of page.
// Material's documented recipe only typesets elements of class "arithmatex" (what pymdownx makes
// from .md pages) and ignores everything else, so the $...$ that nbconvert leaves in notebook
// markdown would stay raw. Here every element is processed except those marked tex2jax_ignore.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: "tex2jax_ignore",
    processHtmlClass: "tex2jax_process|arithmatex",
  },
};

// Material swaps page content without reloading (instant navigation): typeset each new page afresh.
document$.subscribe(() => {
  if (!window.MathJax.startup || !window.MathJax.startup.output) return;
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
