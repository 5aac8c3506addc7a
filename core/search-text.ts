/**
 * Text as searches compare it: lower case, without diacritics, đ as d. An operator typing "tran phu" or "đèn"
 * finds "Trần Phú" and "Đèn chợ": Vietnamese letters differ from their base letter by marks a keyboard or a
 * hurried operator often leaves out, and SQLite's LIKE folds the case of ASCII letters only. Stores keep this
 * form of a searchable text beside it (written with the text) and compare it with the folded words typed.
 */

/** Every Vietnamese letter that is not plain ASCII, lower case (their upper case follows from toUpperCase). */
export const VIETNAMESE_LETTERS = 'àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ';

/** `s` lower-cased, its combining marks removed (NFD), đ and Đ as d. */
export function foldForSearch(s: string): string {
  return s
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[đĐ]/g, 'd')
    .toLowerCase();
}

/**
 * The arguments of SQL `translate(text, from, to)` that fold every Vietnamese letter, both cases, to its
 * lower-case base (then `lower()` of plain ASCII finishes the job whatever the database's collation): for
 * rows written before a store kept the folded form.
 */
export function foldTranslation(): { from: string; to: string } {
  const from = VIETNAMESE_LETTERS + VIETNAMESE_LETTERS.toUpperCase();
  return { from, to: [...from].map((c) => foldForSearch(c)).join('') };
}
