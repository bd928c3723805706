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
// Not the first page: MathJax's start-up typesets it, and typesetting it again made the MathML input
// typeset the hidden screen-reader copy of every formula (<math> in mjx-assistive-mml) a second time.
let firstPage = true;
document$.subscribe(() => {
  if (firstPage) { firstPage = false; return; }
  if (!window.MathJax.startup || !window.MathJax.startup.output) return;
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
